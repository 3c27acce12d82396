"""One module per paper; `get_method(name)` maps config.method to its class, and
`load_published(name, *files)` loads a method's published weights as a `vtlearn.api.Model`."""

from __future__ import annotations

import importlib

from vtlearn.methods.base import Method

_METHODS = {
    "milnce": "vtlearn.methods.milnce:MilNce",
    "vttwins": "vtlearn.methods.vttwins:VtTwins",
    "hessel": "vtlearn.methods.hessel:Hessel",
    "mcn": "vtlearn.methods.mcn:Mcn",
}
# Published weights a method can load, by name: the loader takes the release's files.
_PUBLISHED = {
    "milnce_release": "vtlearn.methods.milnce:load_milnce_release",  # .pth, dict .npy
}


def get_method(name: str) -> type[Method]:
    """The Method class registered under `name`."""
    if name not in _METHODS:
        raise ValueError(f"config.method={name!r} is not one of {sorted(_METHODS)}")
    module, cls = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_published(name: str, *files: str):
    """The published weights `name` (a key of `_PUBLISHED`) from their files, as a
    `vtlearn.api.Model`."""
    if name not in _PUBLISHED:
        raise ValueError(f"no published weights {name!r}; known: {sorted(_PUBLISHED)}")
    module, function = _PUBLISHED[name].split(":")
    return getattr(importlib.import_module(module), function)(*files)
