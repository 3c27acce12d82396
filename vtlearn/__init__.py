"""vtlearn: joint video–text(–audio) representation learning from narrated video.

`vtlearn.load(workdir)` restores a trained run and `vtlearn.load_milnce_release`
the public MIL-NCE weights (`vtlearn.methods.milnce`), as a `vtlearn.api.Model`
that embeds raw text and video (see `vtlearn.api`). They are imported on first use, so `import vtlearn`
stays light.
"""

__version__ = "0.1.0"
__all__ = ["load", "load_milnce_release"]


_HOMES = {"load": "vtlearn.api", "load_milnce_release": "vtlearn.methods.milnce"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'vtlearn' has no attribute {name!r}")
