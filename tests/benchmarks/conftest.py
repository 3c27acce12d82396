"""Benchmark scripts are not a package: a test module names its `SCRIPT` and gets it as `bench`."""

import importlib.util
import sys

import pytest


@pytest.fixture(scope="module")
def bench(request):
    script = request.module.SCRIPT
    spec = importlib.util.spec_from_file_location(f"{script.stem}_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
