"""Soft-DTW against NumPy double loops written from eq. 4 (Ko et al. 2022; Cuturi & Blondel)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtlearn.alignment import expected_alignment
from vtlearn.alignment import pairwise_distance
from vtlearn.alignment import soft_dtw
from vtlearn.alignment import soft_dtw_divergence
from vtlearn.alignment import soft_minimum


def numpy_soft_min(values: list[float], gamma: float) -> float:
    """Eq. 3, −γ log Σ e^{−a/γ}, with +∞ entries contributing nothing."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return np.inf
    smallest = min(finite)
    return smallest - gamma * np.log(sum(np.exp(-(v - smallest) / gamma) for v in finite))


def numpy_soft_dtw(cost: np.ndarray, gamma: float, bandwidth: int | None = None) -> float:
    """r_{n,m} of eq. 4 with r_{0,0} = 0, r_{i,0} = r_{0,j} = ∞ (1-based i, j)."""
    n, m = cost.shape
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if bandwidth is not None and abs(i - j) > bandwidth:
                continue
            r[i, j] = cost[i - 1, j - 1] + numpy_soft_min(
                [r[i - 1, j], r[i, j - 1], r[i - 1, j - 1]], gamma
            )
    return r[n, m]


def numpy_dtw_path(cost: np.ndarray) -> np.ndarray:
    """Binary matrix of the optimal (hard) DTW path, eq. 1–2, by backtracking."""
    n, m = cost.shape
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            r[i, j] = cost[i - 1, j - 1] + min(r[i - 1, j], r[i, j - 1], r[i - 1, j - 1])
    path = np.zeros((n, m))
    i, j = n, m
    while (i, j) != (0, 0):
        path[i - 1, j - 1] = 1.0
        moves = {(i - 1, j): r[i - 1, j], (i, j - 1): r[i, j - 1], (i - 1, j - 1): r[i - 1, j - 1]}
        i, j = min(moves, key=moves.get)
    return path


def finite_difference_gradient(function, cost: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar NumPy function, in float64."""
    gradient = np.zeros_like(cost)
    for index in np.ndindex(cost.shape):
        step = np.zeros_like(cost)
        step[index] = epsilon
        gradient[index] = (function(cost + step) - function(cost - step)) / (2 * epsilon)
    return gradient


@functools.partial(jax.jit, static_argnames=("gamma", "bandwidth", "chunks"))
def values_and_gradient(cost, gamma, lengths_x=None, lengths_y=None, bandwidth=None, chunks=None):
    """Per-example soft-DTW values and the gradient of their sum w.r.t. `cost`."""

    def values(c):
        return soft_dtw(
            c, gamma, lengths_x=lengths_x, lengths_y=lengths_y, bandwidth=bandwidth, chunks=chunks
        )

    return values(cost), jax.grad(lambda c: jnp.sum(values(c)))(cost)


def test_soft_minimum_value_and_gradient():
    inf = np.inf
    rows = np.array([[0.3, -1.2, 0.5], [2.0, inf, 1.9], [inf, inf, -4.0], [0.7, 0.7, 0.7]])
    gamma = 0.25
    values = soft_minimum(*jnp.asarray(rows.T, jnp.float32), gamma)
    np.testing.assert_allclose(values, [numpy_soft_min(list(r), gamma) for r in rows], rtol=1e-6)
    gradients = jax.grad(lambda x: jnp.sum(soft_minimum(x[0], x[1], x[2], gamma)))(
        jnp.asarray(rows.T, jnp.float32)
    ).T
    finite = np.where(np.isfinite(rows), rows, 0.0)
    smallest = np.min(rows, axis=1, keepdims=True)
    softmax = np.where(np.isfinite(rows), np.exp(-(finite - smallest) / gamma), 0.0)
    np.testing.assert_allclose(gradients, softmax / softmax.sum(1, keepdims=True), atol=1e-6)
    # All three +∞: +∞ with a zero, not NaN, gradient.
    everywhere_inf = jnp.full((3, 2), inf, jnp.float32)
    assert np.all(np.isinf(soft_minimum(*everywhere_inf, gamma)))
    _, tangent = jax.jvp(
        lambda x: soft_minimum(*x, gamma), (everywhere_inf,), (jnp.ones((3, 2)),)
    )
    np.testing.assert_array_equal(tangent, 0.0)


@pytest.mark.parametrize("n, m, gamma", [(5, 5, 1.0), (4, 7, 0.1), (6, 3, 0.01), (1, 4, 0.5)])
def test_value_and_gradient_match_numpy_loop(n, m, gamma):
    cost = np.random.default_rng(n * 10 + m).normal(size=(3, n, m))
    values, gradient = values_and_gradient(jnp.asarray(cost, jnp.float32), gamma)
    np.testing.assert_allclose(
        values, [numpy_soft_dtw(c, gamma) for c in cost], rtol=1e-5, atol=1e-5
    )
    for example in range(3):
        expected = finite_difference_gradient(lambda c: numpy_soft_dtw(c, gamma), cost[example])
        np.testing.assert_allclose(gradient[example], expected, atol=2e-5)


def test_per_example_lengths_batch_together():
    rng = np.random.default_rng(3)
    cost = rng.normal(size=(4, 6, 5))
    lengths_x, lengths_y = np.array([6, 3, 1, 4]), np.array([5, 2, 4, 1])
    padded_rows = np.arange(6)[None, :, None] >= lengths_x[:, None, None]
    padded_columns = np.arange(5)[None, None, :] >= lengths_y[:, None, None]
    cost = np.where(padded_rows, np.nan, np.where(padded_columns, np.inf, cost))
    values, gradient = values_and_gradient(
        jnp.asarray(cost, jnp.float32), 0.3, lengths_x, lengths_y
    )
    gradient = np.asarray(gradient)
    for b, (len_x, len_y) in enumerate(zip(lengths_x, lengths_y)):
        valid = cost[b, :len_x, :len_y]
        np.testing.assert_allclose(values[b], numpy_soft_dtw(valid, 0.3), rtol=1e-5)
        expected = finite_difference_gradient(lambda c: numpy_soft_dtw(c, 0.3), valid)
        np.testing.assert_allclose(gradient[b, :len_x, :len_y], expected, atol=2e-5)
        outside = np.ones((6, 5), bool)
        outside[:len_x, :len_y] = False
        np.testing.assert_array_equal(gradient[b][outside], 0.0)


@pytest.mark.parametrize("chunks", [2, 3])
@pytest.mark.parametrize("bandwidth", [None, 2])
def test_examples_sharing_a_wavefront_match_numpy_loop(chunks, bandwidth):
    # Chunks of examples side by side in one wavefront (the CPU default for large
    # batches); 7 examples do not divide into chunks, so padding is exercised too.
    rng = np.random.default_rng(12)
    cost = rng.normal(size=(7, 5, 6))
    lengths_x, lengths_y = np.array([5, 2, 4, 1, 5, 3, 5]), np.array([6, 3, 4, 2, 4, 5, 6])
    values, gradient = values_and_gradient(
        jnp.asarray(cost, jnp.float32), 0.2, lengths_x, lengths_y, bandwidth, chunks
    )
    gradient = np.asarray(gradient)
    for b, (len_x, len_y) in enumerate(zip(lengths_x, lengths_y)):
        def reference(c):
            return numpy_soft_dtw(c, 0.2, bandwidth)

        valid = cost[b, :len_x, :len_y]
        np.testing.assert_allclose(values[b], reference(valid), rtol=1e-5)
        expected = finite_difference_gradient(reference, valid)
        np.testing.assert_allclose(gradient[b, :len_x, :len_y], expected, atol=2e-5)
        assert np.all(gradient[b, len_x:] == 0.0) and np.all(gradient[b, :, len_y:] == 0.0)


def test_nonpositive_chunks_fail_clearly():
    with pytest.raises(ValueError, match="chunks must be a positive int"):
        soft_dtw(jnp.zeros((2, 3, 3)), 0.1, chunks=0)


@pytest.mark.parametrize("gamma", [1e-3, 10.0])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_float32_is_stable_for_extreme_gamma(gamma, scale):
    cost = scale * np.abs(np.random.default_rng(11).normal(size=(3, 6, 7)))
    values, gradient = values_and_gradient(jnp.asarray(cost, jnp.float32), gamma)
    gradient = np.asarray(gradient)
    expected = [numpy_soft_dtw(c, gamma) for c in cost]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert np.all(np.isfinite(gradient))
    if gamma == 1e-3:  # Nearly hard DTW: the gradient is the optimal path.
        for c, g in zip(cost, gradient):
            np.testing.assert_allclose(g, numpy_dtw_path(c), atol=1e-3)


def test_expected_alignment_is_path_probability():
    cost = np.random.default_rng(5).normal(size=(2, 5, 7)).astype(np.float32)
    alignment = np.asarray(expected_alignment(cost, 0.5))
    assert alignment.shape == cost.shape
    assert np.all((alignment >= -1e-6) & (alignment <= 1 + 1e-6))
    np.testing.assert_allclose(alignment[:, 0, 0], 1.0, rtol=1e-5)  # Every path starts at (1, 1)
    np.testing.assert_allclose(alignment[:, -1, -1], 1.0, rtol=1e-5)  # and ends at (n, m).
    expected = finite_difference_gradient(lambda c: numpy_soft_dtw(c, 0.5), cost[1].astype(float))
    np.testing.assert_allclose(alignment[1], expected, atol=2e-5)


def test_bfloat16_inputs_accumulate_in_float32():
    cost = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 8)), jnp.bfloat16)
    values, gradient = values_and_gradient(cost, 0.1)
    assert values.dtype == jnp.float32
    assert gradient.dtype == jnp.bfloat16
    rounded = np.asarray(cost.astype(jnp.float32), np.float64)
    np.testing.assert_allclose(values, [numpy_soft_dtw(c, 0.1) for c in rounded], rtol=1e-5)
    np.testing.assert_allclose(
        gradient.astype(jnp.float32),
        values_and_gradient(cost.astype(jnp.float32), 0.1)[1],
        atol=1e-2,
    )


def test_sakoe_chiba_band():
    cost = np.random.default_rng(4).normal(size=(2, 6, 7))
    values, gradient = values_and_gradient(jnp.asarray(cost, jnp.float32), 0.2, bandwidth=1)
    np.testing.assert_allclose(
        values, [numpy_soft_dtw(c, 0.2, bandwidth=1) for c in cost], rtol=1e-5
    )
    gradient = np.asarray(gradient)
    outside_band = np.abs(np.arange(6)[:, None] - np.arange(7)[None, :]) > 1
    np.testing.assert_array_equal(gradient[:, outside_band], 0.0)
    expected = finite_difference_gradient(lambda c: numpy_soft_dtw(c, 0.2, bandwidth=1), cost[0])
    np.testing.assert_allclose(gradient[0], expected, atol=2e-5)
    # An end point outside the band is unreachable. Known when tracing (no
    # per-example lengths): an error; with traced lengths: +∞ with a zero
    # (not NaN) gradient.
    with pytest.raises(ValueError, match="narrower than"):
        values_and_gradient(jnp.asarray(cost[:, :3], jnp.float32), 0.2, bandwidth=0)
    values, gradient = values_and_gradient(jnp.asarray(cost, jnp.float32), 0.2, bandwidth=0,
                                           lengths_x=3)
    assert np.all(np.isinf(values))
    np.testing.assert_array_equal(gradient, 0.0)


def test_leading_batch_dims_under_jit():
    cost = np.random.default_rng(6).normal(size=(2, 3, 4, 5))
    values = jax.jit(lambda c: soft_dtw(c, 0.7))(jnp.asarray(cost, jnp.float32))
    expected = np.array([[numpy_soft_dtw(c, 0.7) for c in row] for row in cost])
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_soft_dtw_divergence():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4, 3))

    def numpy_divergence(a, b):
        def value(p, q):
            squared = np.array([[np.sum((u - v) ** 2) for v in q] for u in p])
            return numpy_soft_dtw(squared, 1.0)

        return value(a, b) - 0.5 * (value(a, a) + value(b, b))

    divergence = jax.jit(soft_dtw_divergence)
    np.testing.assert_allclose(
        divergence(x.astype(np.float32), y.astype(np.float32)),
        [numpy_divergence(a, b) for a, b in zip(x, y)],
        rtol=1e-4,
    )
    np.testing.assert_allclose(divergence(x, x), 0.0, atol=1e-5)


def test_hessian_vector_product_matches_finite_differences():
    rng = np.random.default_rng(9)
    cost = jnp.asarray(rng.normal(size=(2, 4, 5)), jnp.float32)
    direction = jnp.asarray(rng.normal(size=(2, 4, 5)), jnp.float32)

    def gradient(c):
        return values_and_gradient(c, 0.5)[1]

    _, product = jax.jit(lambda c, v: jax.jvp(gradient, (c,), (v,)))(cost, direction)
    epsilon = 1e-2
    expected = (gradient(cost + epsilon * direction) - gradient(cost - epsilon * direction)) / (
        2 * epsilon
    )
    np.testing.assert_allclose(product, expected, atol=2e-3)


@pytest.mark.parametrize("distance", ["neg_dot", "cosine", "sq_euclidean"])
def test_pairwise_distance_layouts(distance):
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(3, 4, 5)), rng.normal(size=(2, 6, 5))

    def delta(u, v):
        if distance == "neg_dot":
            return -np.dot(u, v)
        if distance == "cosine":
            return 1 - np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
        return np.sum((u - v) ** 2)

    expected = np.array(
        [[[[delta(u, v) for v in b] for u in a] for b in y] for a in x]
    )  # [B, C, n, m]
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    np.testing.assert_allclose(
        pairwise_distance(x32, y32, distance, all_pairs=True), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        pairwise_distance(x32, y32, distance, all_pairs=True, batch_last=True),
        np.transpose(expected, (2, 3, 0, 1)),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        pairwise_distance(x32[:2], y32, distance), expected[[0, 1], [0, 1]], atol=1e-5
    )


def test_l2_normalize_keeps_float64_precision():
    from vtlearn.alignment import l2_normalize

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        # A vector whose float32 norm is off: 1 + 1e-9 is 1 in float32.
        x = np.array([[1.0, 1e-4, 3e-5]], np.float64) * (1 + 1e-9)
        got = np.asarray(l2_normalize(jnp.asarray(x)))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, x / np.linalg.norm(x), rtol=1e-15, atol=0)
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gamma=-0.1), "gamma must be a finite number > 0, got -0.1"),
    (dict(gamma=0.0), "gamma must be a finite number > 0, got 0.0"),
    (dict(gamma=float("nan")), "gamma must be a finite number > 0"),
    (dict(bandwidth=-1), "bandwidth must be >= 0"),
    (dict(bandwidth=1), r"bandwidth=1 is narrower than \|n - m\| = 2"),
])
def test_bad_arguments_fail_when_traced_naming_them(kwargs, message):
    cost = jnp.ones((3, 4, 6))  # n = 4, m = 6
    with pytest.raises(ValueError, match=message):
        soft_dtw(cost, **{"gamma": 1.0, **kwargs})


def test_empty_matrices_and_bad_smoothing_gamma_fail_naming_them():
    from vtlearn.alignment.s2dtw import s2dtw_from_distances

    with pytest.raises(ValueError, match="0x3; they need at least one row"):
        soft_dtw(jnp.ones((2, 0, 3)), 1.0)
    with pytest.raises(ValueError, match="smoothing_gamma must be a finite number > 0"):
        s2dtw_from_distances(jnp.ones((2, 3, 3)), smoothing_gamma=-1.0)
    # A band that fits |n - m| is fine; with per-example lengths it is not
    # checked (they are traced) and a too-narrow band gives +inf, as documented.
    assert np.isfinite(float(soft_dtw(jnp.ones((4, 6)), 1.0, bandwidth=2)))
    assert float(soft_dtw(jnp.ones((4, 6)), 1.0, bandwidth=0, lengths_x=2, lengths_y=4)) == np.inf
