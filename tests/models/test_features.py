"""The feature tower: endpoints, parameter count, BatchNorm state, config errors."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtlearn.config_defaults import load_config
from vtlearn.methods import get_method
from vtlearn.models.features import FeatureTower

ROOT = pathlib.Path(__file__).parents[2]


def test_endpoints_and_parameter_count():
    tower = FeatureTower(embedding_dim=512)
    features = jax.random.normal(jax.random.key(0), (6, 128))
    variables = tower.init(jax.random.key(1), features, train=False)
    out, updates = tower.apply(variables, features, train=True, mutable=["batch_stats"])
    assert out["mixed_5c"].shape == (6, 1024) and out["video_embedding"].shape == (6, 512)
    assert (np.asarray(out["mixed_5c"]) >= 0).all()  # after the ReLU
    count = sum(x.size for x in jax.tree.leaves(variables["params"]))
    assert count == 128 * 1024 + 2 * 1024 + 1024 * 512 + 512
    # Training updates the running mean towards the batch mean of fc1's output.
    pre = features @ variables["params"]["fc1"]["kernel"]
    np.testing.assert_allclose(updates["batch_stats"]["bn1"]["mean"],
                               0.1 * jnp.mean(pre, axis=0), rtol=1e-4, atol=1e-6)


def test_features_model_needs_feature_inputs():
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.model.video.name = "features"
    with pytest.raises(ValueError, match="config.data.features_2d"):
        get_method("milnce")(config, num_devices=1)
