"""S2DTW against NumPy loops written from eqs. 5–6 and §4.2 of Ko et al. (2022)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtlearn.alignment import local_neighborhood_smoothing
from vtlearn.alignment import pairwise_distance
from vtlearn.alignment import s2dtw
from vtlearn.alignment import s2dtw_from_distances


def numpy_soft_min(values: list[float], gamma: float) -> float:
    """Eq. 3 with +∞ entries contributing nothing."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return np.inf
    smallest = min(finite)
    return smallest - gamma * np.log(sum(np.exp(-(v - smallest) / gamma) for v in finite))


def numpy_distances(
    x: np.ndarray, y: np.ndarray, distance: str = "neg_dot", normalize: bool = True
) -> np.ndarray:
    """Δ(X, Y)[i, j] = δ(x_i, y_j), one pair at a time."""
    if normalize:
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    delta = np.zeros((len(x), len(y)))
    for i, u in enumerate(x):
        for j, v in enumerate(y):
            if distance == "neg_dot":
                delta[i, j] = -np.dot(u, v)
            elif distance == "cosine":
                delta[i, j] = 1 - np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
            else:
                delta[i, j] = np.sum((u - v) ** 2)
    return delta


def numpy_smoothing(delta: np.ndarray, gamma: float, origin: str = "paper") -> np.ndarray:
    """Eq. 5 with δ_{0,0} = 0, δ_{i,0} = δ_{0,j} = ∞ (paper) or the release's (1, 1) cell."""
    n, m = delta.shape
    padded = np.full((n + 1, m + 1), np.inf)  # 1-based δ_{i,j}.
    padded[1:, 1:] = delta
    padded[0, 0] = 0.0
    smoothed = np.zeros_like(delta)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            neighbours = [padded[i - 1, j], padded[i, j - 1], padded[i - 1, j - 1]]
            if origin == "release" and (i, j) == (1, 1):
                neighbours = [0.0, 0.0, 0.0]
            smoothed[i - 1, j - 1] = padded[i, j] + numpy_soft_min(neighbours, gamma)
    return smoothed


def numpy_merge(delta: np.ndarray, phi: float) -> np.ndarray:
    """Δ^φ: X^φ = [φ, x_1, φ, …, x_n, φ], Y^φ likewise; pairs with a dummy cost φ."""
    n, m = delta.shape
    merged = np.zeros((2 * n + 1, 2 * m + 1))
    for a in range(2 * n + 1):
        for b in range(2 * m + 1):
            is_dummy = a % 2 == 0 or b % 2 == 0
            merged[a, b] = phi if is_dummy else delta[(a - 1) // 2, (b - 1) // 2]
    return merged


def numpy_soft_dtw(cost: np.ndarray, gamma: float) -> float:
    """Eq. 4/6 with r_{0,0} = 0 and infinite borders."""
    n, m = cost.shape
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            r[i, j] = cost[i - 1, j - 1] + numpy_soft_min(
                [r[i - 1, j], r[i, j - 1], r[i - 1, j - 1]], gamma
            )
    return r[n, m]


def numpy_s2dtw_from_distances(
    delta: np.ndarray,
    gamma: float = 0.1,
    smoothing_gamma: float | None = None,
    phi: float = 0.5,
    local_smoothing: bool = True,
    weak_alignment: bool = True,
    origin: str = "paper",
) -> float:
    """Algorithm 1, lines 4–12: smoothing, then merge with φ, then eq. 6."""
    if local_smoothing:
        delta = numpy_smoothing(
            delta, gamma if smoothing_gamma is None else smoothing_gamma, origin
        )
    if weak_alignment:
        delta = numpy_merge(delta, phi)
    return numpy_soft_dtw(delta, gamma)


def numpy_s2dtw(
    x: np.ndarray, y: np.ndarray, distance: str = "neg_dot", normalize: bool = True, **options
) -> float:
    """S2DTW(X, Y) of one pair of sequences [n, d], [m, d]."""
    return numpy_s2dtw_from_distances(numpy_distances(x, y, distance, normalize), **options)


def finite_difference_gradient(function, point: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    gradient = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        step = np.zeros_like(point)
        step[index] = epsilon
        gradient[index] = (function(point + step) - function(point - step)) / (2 * epsilon)
    return gradient


_STATIC = (
    "gamma",
    "smoothing_gamma",
    "phi",
    "distance",
    "local_smoothing",
    "weak_alignment",
    "smoothing_origin",
)


@functools.partial(jax.jit, static_argnames=_STATIC)
def values_and_gradients(x, y, mask_x=None, mask_y=None, **options):
    """Per-pair S2DTW values and the gradient of their sum w.r.t. (x, y)."""

    def values(a, b):
        return s2dtw(a, b, mask_x=mask_x, mask_y=mask_y, **options)

    return values(x, y), jax.grad(lambda a, b: jnp.sum(values(a, b)), argnums=(0, 1))(x, y)


@pytest.mark.parametrize(
    "n, m, options",
    [
        (4, 4, dict(gamma=0.1, phi=0.5)),
        (3, 5, dict(gamma=1.0, phi=0.0)),
        (5, 2, dict(gamma=0.3, smoothing_gamma=0.05, phi=-0.2)),
        (1, 3, dict(gamma=0.1, phi=0.5, smoothing_origin="release")),
    ],
)
def test_value_and_gradient_match_numpy_loops(n, m, options):
    rng = np.random.default_rng(n * 10 + m)
    x, y = rng.normal(size=(2, n, 3)), rng.normal(size=(2, m, 3))
    values, (grad_x, grad_y) = values_and_gradients(
        x.astype(np.float32), y.astype(np.float32), **options
    )
    reference = {k.replace("smoothing_origin", "origin"): v for k, v in options.items()}
    np.testing.assert_allclose(
        values, [numpy_s2dtw(a, b, **reference) for a, b in zip(x, y)], rtol=1e-5, atol=1e-5
    )
    for b in range(2):
        expected_x = finite_difference_gradient(lambda a: numpy_s2dtw(a, y[b], **reference), x[b])
        expected_y = finite_difference_gradient(lambda c: numpy_s2dtw(x[b], c, **reference), y[b])
        np.testing.assert_allclose(grad_x[b], expected_x, atol=5e-5)
        np.testing.assert_allclose(grad_y[b], expected_y, atol=5e-5)


def test_masked_lengths_match_truncated_sequences():
    rng = np.random.default_rng(0)
    n, m = 5, 4
    lengths_x, lengths_y = np.array([5, 2, 3, 1]), np.array([4, 4, 1, 2])
    x, y = rng.normal(size=(4, n, 3)), rng.normal(size=(4, m, 3))
    mask_x, mask_y = np.arange(n) < lengths_x[:, None], np.arange(m) < lengths_y[:, None]
    x[~mask_x] = 0.0  # Zero padding must not produce NaN through the normalisation.
    options = dict(gamma=0.2, phi=0.3)
    values, (grad_x, grad_y) = values_and_gradients(
        x.astype(np.float32), y.astype(np.float32), mask_x, mask_y, **options
    )
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_y))
    for b, (len_x, len_y) in enumerate(zip(lengths_x, lengths_y)):
        a, c = x[b, :len_x], y[b, :len_y]
        np.testing.assert_allclose(values[b], numpy_s2dtw(a, c, **options), rtol=1e-5)
        np.testing.assert_allclose(
            grad_x[b, :len_x],
            finite_difference_gradient(lambda p: numpy_s2dtw(p, c, **options), a),
            atol=5e-5,
        )
        np.testing.assert_allclose(
            grad_y[b, :len_y],
            finite_difference_gradient(lambda q: numpy_s2dtw(a, q, **options), c),
            atol=5e-5,
        )
    np.testing.assert_array_equal(grad_x[~mask_x], 0.0)
    np.testing.assert_array_equal(grad_y[~mask_y], 0.0)


@pytest.mark.parametrize("local_smoothing", [False, True])
@pytest.mark.parametrize("weak_alignment", [False, True])
def test_ablation_flags(local_smoothing, weak_alignment):
    delta = np.random.default_rng(1).normal(size=(3, 4, 6))
    flags = dict(local_smoothing=local_smoothing, weak_alignment=weak_alignment)
    values = jax.jit(functools.partial(s2dtw_from_distances, gamma=0.2, phi=0.1, **flags))(
        delta.astype(np.float32)
    )
    expected = [numpy_s2dtw_from_distances(d, gamma=0.2, phi=0.1, **flags) for d in delta]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("origin", ["paper", "release"])
def test_smoothing_boundary(origin):
    delta = np.random.default_rng(2).normal(size=(2, 3, 4))
    smoothed = local_neighborhood_smoothing(delta.astype(np.float32), 0.1, origin=origin)
    np.testing.assert_allclose(
        smoothed, [numpy_smoothing(d, 0.1, origin) for d in delta], rtol=1e-5, atol=1e-6
    )
    offset = 0.0 if origin == "paper" else -0.1 * np.log(3.0)
    np.testing.assert_allclose(smoothed[:, 0, 0], delta[:, 0, 0] + offset, rtol=1e-5)


@pytest.mark.parametrize("distance", ["cosine", "sq_euclidean"])
def test_other_distances(distance):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    values = jax.jit(functools.partial(s2dtw, distance=distance, normalize=False))(
        x.astype(np.float32), y.astype(np.float32)
    )
    expected = [numpy_s2dtw(a, b, distance=distance, normalize=False) for a, b in zip(x, y)]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_weak_alignment_skips_an_irrelevant_caption():
    """§4.2: a caption farther than φ from every clip is skipped, not forcibly aligned."""
    delta = np.zeros((2, 3, 3), np.float32)
    delta[0, :, 1] = 5.0  # Caption 2 is irrelevant to all clips ...
    delta[1, :, 1] = 50.0  # ... and even more so.
    weak = s2dtw_from_distances(delta, local_smoothing=False)
    forced = s2dtw_from_distances(delta, local_smoothing=False, weak_alignment=False)
    np.testing.assert_allclose(weak[1], weak[0], atol=1e-4)
    np.testing.assert_allclose(forced[1] - forced[0], 45.0, rtol=1e-3)


def test_orthogonal_caption_is_skipped_under_cosine_but_not_negative_dot():
    """A caption orthogonal to every clip: δ = 0 < φ under −⟨x, y⟩ (aligned to a
    clip), δ = 1 > φ under 1 − cos (routed through dummies); see the module docstring."""
    eye = np.eye(3, dtype=np.float32)
    clips, captions = eye[[0, 1]], eye[[0, 2, 1]]  # caption 2 matches no clip

    def caption_2_alignment(distance):
        delta = pairwise_distance(jnp.asarray(clips), jnp.asarray(captions), distance)
        grad = jax.grad(lambda d: s2dtw_from_distances(d, local_smoothing=False))(delta)
        return float(grad[:, 1].sum())  # expected number of clips caption 2 is aligned to

    assert caption_2_alignment("neg_dot") > 0.9
    assert caption_2_alignment("cosine") < 0.05
