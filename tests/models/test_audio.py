"""ResDAVEnet's layout and its time pooling."""

import jax
import jax.numpy as jnp
import numpy as np

from vtlearn.models import audio


def test_resdavenet_reduces_time_sixteenfold_and_keeps_bands_as_channels():
    net = audio.ResDavenet(widths=(4, 8, 8, 16))
    x = jnp.ones((2, 100, 40))
    variables = net.init(jax.random.PRNGKey(0), x, train=True)
    assert variables["params"]["conv_bands"]["kernel"].shape == (1, 40, 4)  # the 40x1 kernel
    assert variables["params"]["stage1_block0"]["conv1"]["kernel"].shape == (9, 4, 8)
    out, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (2, 7, 16)  # ceil(100 / 16)
    assert not np.allclose(updates["batch_stats"]["bn_bands"]["mean"],
                           variables["batch_stats"]["bn_bands"]["mean"])


def test_pool_averages_all_steps_or_the_valid_ones():
    out = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    np.testing.assert_allclose(audio.pool(out), np.asarray(out).mean(1))
    pooled = audio.pool(out, jnp.array([40, 3]))  # 40 frames -> 2 steps; 3 -> at least 1
    np.testing.assert_allclose(pooled[0], np.asarray(out)[0, :2].mean(0))
    np.testing.assert_allclose(pooled[1], np.asarray(out)[1, 0])
