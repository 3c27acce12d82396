"""Plug-ins by name: `load_plugin` imports the module a config value names.

Samplers (`config.data.sampler`) and evaluators (`config.evals.<name>.type`)
are modules, big_vision style: the value "clip" names
`vtlearn.data.samplers.clip`, and a dotted value ("mylab.samplers.shots")
names a module of the user's own. Each module defines one class under a
conventional name (`Sampler`, `Evaluator`), so a new plug-in is one new file.
A module of one's own must be named with its package (a dotted name).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil


def load_plugin(package: str, name: str, attribute: str, config_key: str):
    """`attribute` of module `package.name` (or of module `name` if dotted).

    Args:
      package: where built-in plug-ins live, e.g. "vtlearn.evaluation".
      name: the config value.
      attribute: the class every plug-in module defines.
      config_key: named in the error (e.g. "config.data.sampler").

    Raises:
      ValueError: naming `config_key` and the built-in choices when `name`
        names no module, or one without `attribute`.
    """
    module_name = name if "." in name else f"{package}.{name}"
    try:
        module = importlib.import_module(module_name) if name else None
    except ModuleNotFoundError as e:
        if e.name != module_name:  # the plug-in exists but one of its imports does not
            raise
        module = None
    if module is None or not hasattr(module, attribute):
        raise ValueError(f"{config_key}={name!r} names no plug-in: expected a module "
                         f"{module_name} defining {attribute}; built in: "
                         f"{', '.join(builtin_plugins(package, attribute))}")
    return getattr(module, attribute)


def builtin_plugins(package: str, attribute: str) -> list[str]:
    """Modules of `package` defining a concrete `attribute` class (imports them)."""
    modules = pkgutil.iter_modules(importlib.import_module(package).__path__)
    classes = {m.name: getattr(importlib.import_module(f"{package}.{m.name}"), attribute, None)
               for m in modules}
    return sorted(name for name, cls in classes.items()
                  if cls is not None and not inspect.isabstract(cls))
