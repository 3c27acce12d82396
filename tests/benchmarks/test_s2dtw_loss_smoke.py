"""benchmarks/s2dtw_loss.py at a tiny size: its peer computes the same loss.

No timing is checked. Peer (a) is a row/cell scan written independently of
`vtlearn.alignment`; both are checked against the NumPy loop of eq. 4.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tests.alignment.test_soft_dtw import numpy_soft_dtw

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "s2dtw_loss.py"


def test_peer_recursion_matches_numpy_loop(bench):
    cost = np.random.default_rng(0).normal(size=(5, 4, 3))  # [n, m, B]
    values = bench.scan_soft_dtw(jnp.asarray(cost, jnp.float32), bench.GAMMA)
    expected = [numpy_soft_dtw(cost[..., b], bench.GAMMA) for b in range(3)]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_peer_and_ours_agree_on_loss_and_gradient(bench):
    video, text = bench.embeddings(batch=6, length=3)
    ours = jax.value_and_grad(bench.ours, argnums=(0, 1))(video, text)
    peer = jax.value_and_grad(bench.scan_peer_loss, argnums=(0, 1))(video, text)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ours, peer)
    assert np.any(ours[1][0] != 0) and np.any(ours[1][1] != 0)  # not vacuous


def test_batched_peers_compute_the_numpy_loops_values_and_our_gradients(bench):
    from vtlearn.alignment import soft_dtw

    cost = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)  # [P, n, m]
    expected = [numpy_soft_dtw(c.astype(np.float64), bench.GAMMA) for c in cost]
    ours = jax.vmap(jax.grad(lambda c: soft_dtw(c, bench.GAMMA)))(jnp.asarray(cost))
    for name, peer in bench.batched_peers(cost).items():
        values, grads = peer()
        np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(grads, ours, rtol=1e-3, atol=1e-5, err_msg=name)
