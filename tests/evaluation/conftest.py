"""A tiny MIL-NCE run on the tiny lab with the feature tower, initialised, not trained:
what evaluator tests embed with (they check machinery, not scores)."""

import pathlib

import pytest

from vtlearn import sharding, train
from vtlearn.config_defaults import load_config, use_lab_features
from vtlearn.data import sources

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    """(resolved config, trainer, initial state)."""
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = str(tmp_path_factory.mktemp("lab"))
    use_lab_features(config)
    config = sources.resolve_data(config)
    trainer = train.Trainer(config, sharding.make_mesh())
    return config, trainer, trainer.init_state()
