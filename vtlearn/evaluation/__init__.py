"""Evaluators: one module each, chosen by `config.evals.<name>.type`.

Built in, on records (the lab's or converted ones): "retrieval" (zero-shot
text-video retrieval), "linear_probe" (frozen features, linear classifier),
"clustering" (MCN's clustering metrics), "groundability" (Hessel et al.'s
intra-video AUC) and "alignment_view" (VT-TWINS Fig. 5 matrices as a PNG).
On the downstream benchmarks' own files (`vtlearn.evaluation.benchmark`):
"youcook2", "msrvtt", "crosstask", "action_recognition" (HMDB51, UCF101),
"coin", "mining_youtube" and "youtube8m_segments".
See `vtlearn.evaluation.base` for the interface.
"""

from __future__ import annotations

import types
from pathlib import Path

import ml_collections

from vtlearn.registry import load_plugin


def get_evaluator_module(type_: str, name: str = "<name>") -> types.ModuleType:
    """The module of evaluator `type_` (it defines `Evaluator` and `default_config`)."""
    import sys

    cls = load_plugin("vtlearn.evaluation", type_, "Evaluator", f"config.evals.{name}.type")
    return sys.modules[cls.__module__]


def build_evaluators(method, mesh, config: ml_collections.ConfigDict,
                     workdir: str | Path | None = None, names=None) -> dict:
    """`{name: Evaluator}` for `config.evals` (or its `names`), validated now.

    Raises:
      ValueError: naming the config key of an unknown type, a missing file
        pattern or any other setting an evaluator rejects.
    """
    names = list(config.evals) if names is None else list(names)
    unknown = set(names) - set(config.evals)
    if unknown:
        raise ValueError(f"no evaluator(s) {sorted(unknown)} in config.evals "
                         f"(it has {sorted(config.evals)})")
    return {name: get_evaluator_module(config.evals[name].type, name).Evaluator(
        method, mesh, config, name, workdir) for name in names}


def standalone(model, type_: str, workdir: str | Path | None = None, **settings):
    """An evaluator of `type_` over a loaded `vtlearn.api.Model`.

    Uses the run's first `config.evals` section of that type, or the type's
    defaults if it has none, with `settings` over it.
    """
    from vtlearn.evaluation.base import section

    config = ml_collections.ConfigDict(model.config.to_dict())
    name = next((k for k, v in config.evals.items() if v.type == type_), None)
    if name is None:
        name = type_
        config.evals[name] = section(type_, every=0)
    unknown = set(settings) - set(config.evals[name])
    if unknown:
        raise ValueError(f"evaluator {type_!r} has no key(s) {sorted(unknown)}")
    config.evals[name].update(settings)
    return get_evaluator_module(type_, name).Evaluator(model.method, model.mesh, config, name,
                                                       workdir)
