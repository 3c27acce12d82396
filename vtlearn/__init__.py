"""vtlearn: joint video–text(–audio) representation learning from narrated video.

`vtlearn.load(workdir)` restores a trained run and `vtlearn.load_milnce_release`
the public MIL-NCE weights, as a `vtlearn.api.Model` that embeds raw text and
video (see `vtlearn.api`). They are imported on first use, so `import vtlearn`
stays light.
"""

__version__ = "0.1.0"
__all__ = ["load", "load_milnce_release"]


def __getattr__(name):
    if name in __all__:
        from vtlearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'vtlearn' has no attribute {name!r}")
