"""Sections every run config shares; `configs/*.py` start from `base_config()`.

Keys (all overridable with `--config.section.key=value`):

* `method`: a name registered in `vtlearn.methods`.
* `data`: `vtlearn.data.pipeline.default_config()` (files, sampling, crops).
* `lab`: overrides of the synthetic-lab preset named by `data.lab`
  (`vtlearn.data.lab.LabConfig` fields, e.g. `misaligned_fraction`).
* `optimizer`: `vtlearn.optim.default_config()`.
* `train`: global batch size, steps, logging and checkpoint intervals.
* `evals`: one section per evaluation, `evals.<name>.type` naming an
  evaluator module of `vtlearn.evaluation` and `evals.<name>.every` its
  interval in steps (0: not during training); the other keys are the
  evaluator's (`vtlearn.evaluation.base.section`).
* `eval_batch_size`: global units per step of the evaluation embedding pass.
* `model_init`: start from pretrained weights: a run's workdir, or a weight
  file the method reads (`Method.external_weights`, e.g. the MIL-NCE
  release's `.pth`); "" = random init (`vtlearn.api.load_pretrained`).
"""

from __future__ import annotations

import ml_collections

from vtlearn import optim
from vtlearn.data import pipeline
from vtlearn.evaluation.base import section


def base_config(name: str, method: str) -> ml_collections.ConfigDict:
    """Shared defaults; callers fill `model`/`loss` and adjust the rest."""
    config = ml_collections.ConfigDict()
    config.name = name
    config.method = method
    config.seed = 0
    config.data = pipeline.default_config()
    config.lab = ml_collections.ConfigDict()
    config.optimizer = optim.default_config()
    config.train = ml_collections.ConfigDict(dict(
        batch_size=8192, num_steps=400_000, log_every=100, checkpoint_every=5000,
        keep_checkpoints=3))
    config.model_init = ""
    config.evals = ml_collections.ConfigDict(dict(
        retrieval=section("retrieval", every=10_000),
        probe=section("linear_probe", every=10_000)))
    config.eval_batch_size = 64
    return config


def evaluate_every(config: ml_collections.ConfigDict, steps: int) -> None:
    """Sets `every` of all of `config.evals` (a preset's shorter schedule)."""
    for name in config.evals:
        config.evals[name].every = steps


def use_lab(config: ml_collections.ConfigDict, preset: str, **lab_overrides) -> None:
    """Points `config.data` at a synthetic-lab preset with optional overrides.

    `config.lab` holds every `LabConfig` field, the preset's value or the
    override, so `--config.lab.KEY=...` sets any of them on a locked config.
    """
    import dataclasses

    from vtlearn.data import lab

    config.data.lab = preset
    settings = dataclasses.replace(lab.lab_config(preset), **lab_overrides)
    config.lab = ml_collections.ConfigDict(dataclasses.asdict(settings))
    config.data.features_2d = 0
    config.data.features_3d = 0
    # Lab narrations name directions ("moves left") and show digits: a mirrored
    # clip would contradict its own captions.
    config.data.flip = False


def use_lab_features(config: ml_collections.ConfigDict) -> None:
    """Swaps the pixel backbone for `vtlearn.models.features` on the lab's features.

    Same as `--config.model.video.name=features --config.data.video=False
    --config.data.features_2d=D2 --config.data.features_3d=D3` with the lab
    preset's feature sizes (64 each for "local", 16 for "tiny").
    """
    from vtlearn.data import lab

    preset = lab.lab_config(config.data.lab)
    config.model.video.name = "features"
    config.data.update(video=False, features_2d=preset.features_2d,
                       features_3d=preset.features_3d)


def configs_dir() -> str:
    """The repository's `configs/` (beside the `vtlearn` package of a source checkout).

    Raises:
      FileNotFoundError: when vtlearn is installed without its source tree.
    """
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "configs"
    if not (path / "milnce_s3d.py").is_file():
        raise FileNotFoundError(
            f"no configs/ beside the vtlearn package ({path}): the paper configs live in "
            "the source repository; install it from a clone (pip install -e .)")
    return str(path)


def override(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets the dotted `key` ("train.batch_size") as `--config.KEY=VALUE` would.

    A string `value` is read as a Python literal where it is one ("32",
    "(1, 2)"), else kept as text ("none").

    Raises:
      KeyError: naming the key, when the config has no such key.
    """
    import ast

    *parents, last = key.split(".")
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(f"unknown config key {key!r}")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
        raise KeyError(f"unknown config key {key!r}")
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    node[last] = value


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]` as `--config` would (for notebooks, tests)."""
    import importlib.util
    import pathlib

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
