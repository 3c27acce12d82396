"""One module per paper; `get_method(name)` maps config.method to its class."""

from __future__ import annotations

import importlib

from vtlearn.methods.base import Method

_METHODS = {
    "milnce": "vtlearn.methods.milnce:MilNce",
    "vttwins": "vtlearn.methods.vttwins:VtTwins",
    "hessel": "vtlearn.methods.hessel:Hessel",
    "mcn": "vtlearn.methods.mcn:Mcn",
}


def get_method(name: str) -> type[Method]:
    """The Method class registered under `name`."""
    if name not in _METHODS:
        raise ValueError(f"config.method={name!r} is not one of {sorted(_METHODS)}")
    module, cls = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
