"""Soft-DTW (Cuturi & Blondel, 2017) for batches of cost matrices.

The value is eq. 4 of Ko et al. (2022) (VT-TWINS)::

    r_{i,j} = δ_{i,j} + min^γ{r_{i-1,j}, r_{i,j-1}, r_{i-1,j-1}},
    r_{0,0} = 0,  r_{i,0} = r_{0,j} = +∞  (i, j ≥ 1),

with the soft minimum of eq. 3, and `soft_dtw` returns r_{n,m} (or
r_{len_x,len_y} for per-example valid lengths).

Implementation: R is processed one anti-diagonal (i + j = const) at a time, so
the forward pass is a `jax.lax.scan` over anti-diagonals, each step
vectorised over the diagonal and the batch. Internally the batch is the minor
axis: costs are ``[n, m, batch]`` and a diagonal is ``[row, batch]``, so the
three predecessors of a cell are the previous diagonals shifted by zero or one
row (slices). The costs are skewed once before the scan (`_skew`: one pad and
reshape) so that step s reads its diagonal as one [n, batch] slice, and the
backward pass emits E diagonal by diagonal and unskews it once. Callers
that can produce costs batch-last (the S2DTW loss does) skip the transpose
from the usual ``[..., n, m]`` layout with ``batch_last=True``.

Chunks: the batch is split into C chunks of W examples whose matrices are laid
side by side, separated by walls of +∞ ("wide" matrix [n, C·(m+1)+1, W]), and
one wavefront sweeps all of them: n + C·(m+1) steps of [n, W]. A single chunk
(C = 1, the default on accelerators) gives the fewest sequential steps, n + m + 1.
On a CPU, where the vector units are full at a few hundred examples, time is
the number of cells evaluated: a diagonal is n rows wide, so one chunk
evaluates about 2·n·m cells per matrix for n = m, while C chunks evaluate
n·(m+1) + n²/C, and [n, W] blocks of W = 256 stay in cache (the default there).
`benchmarks/s2dtw_loss.py` measures it.

The backward pass is a `jax.custom_vjp`: the forward saves, per cell, the
soft-min weights of its up and left predecessors (the probabilities with which
the Gibbs distribution over alignment paths reaches the cell from each; the
diagonal one is the remainder), and a reverse scan over the diagonals
accumulates the expected alignment E = ∂r_{n,m}/∂δ (Cuturi & Blondel, Alg. 2).
"""

from collections.abc import Callable
import functools
import math
from typing import Literal

import jax
from jax import lax
import jax.numpy as jnp

Distance = Literal["neg_dot", "cosine", "sq_euclidean"]

_INF = float("inf")


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def soft_minimum(a: jax.Array, b: jax.Array, c: jax.Array, gamma: float) -> jax.Array:
    """Soft minimum of three arrays, eq. 3: −γ log(e^{−a/γ} + e^{−b/γ} + e^{−c/γ}).

    Computed by subtracting the minimum before dividing by γ, so it is stable
    for small γ; its derivative is the softmax weights. +∞ entries are
    ignored; if all three are +∞ the result is +∞ with a zero (not NaN)
    gradient.

    Args:
      a: Array of any shape.
      b: Array broadcastable with `a`.
      c: Array broadcastable with `a`.
      gamma: Smoothing parameter γ > 0 (a Python float).

    Returns:
      Array of the broadcast shape.
    """
    return soft_minimum_and_weights(a, b, c, gamma, with_weights=False)[0]


@soft_minimum.defjvp
def _soft_minimum_jvp(gamma, primals, tangents):
    value, (weight_a, weight_b) = soft_minimum_and_weights(*primals, gamma, with_weights=True)
    weight_c = jnp.where(jnp.isfinite(value), 1.0 - weight_a - weight_b, 0.0)
    tangent_a, tangent_b, tangent_c = tangents
    return value, weight_a * tangent_a + weight_b * tangent_b + weight_c * tangent_c


def soft_minimum_and_weights(
    up: jax.Array, left: jax.Array, diagonal: jax.Array, gamma: float, with_weights: bool
) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """`soft_minimum` and, optionally, its softmax weights for `up` and `left`.

    (The weight of `diagonal` is 1 minus their sum where some entry is
    finite.) Two exponentials per cell, not three: the smallest argument
    contributes e^0 = 1. Weights of +∞ entries are zero. The one soft-min of
    the package: `soft_minimum` and the custom VJPs of soft-DTW and of the
    S2DTW smoothing call it (it is not itself differentiated).
    """
    smallest = jnp.minimum(jnp.minimum(up, left), diagonal)
    largest = jnp.maximum(jnp.maximum(up, left), diagonal)
    middle = jnp.maximum(jnp.minimum(up, left), jnp.minimum(jnp.maximum(up, left), diagonal))
    shift = jnp.where(jnp.isfinite(smallest), smallest, 0.0)
    inverse_gamma = 1.0 / gamma  # Multiplying: a divide made this ~1.6x slower on CPU.
    exp_middle = jnp.exp((shift - middle) * inverse_gamma)
    exp_largest = jnp.exp((shift - largest) * inverse_gamma)
    total = 1.0 + exp_middle + exp_largest
    value = smallest - gamma * jnp.log(total)
    if not with_weights:
        return value, None
    inverse_total = jnp.where(jnp.isfinite(smallest), 1.0 / total, 0.0)

    def weight(argument):  # Ties pick equal weights, as they should.
        exp_argument = jnp.where(argument == largest, exp_largest, exp_middle)
        return jnp.where(argument == smallest, 1.0, exp_argument) * inverse_total

    return value, (weight(up), weight(left))


# On CPU a wavefront over chunks of this many examples keeps the vector units
# busy while evaluating few cells outside the matrices (module docstring).
_CPU_CHUNK_WIDTH = 256


def _default_chunks(batch: int) -> int:
    if jax.default_backend() != "cpu":
        return 1
    return max(1, batch // _CPU_CHUNK_WIDTH)


def _to_wavefront_layout(
    cost: jax.Array,
    lengths_x: jax.Array,
    lengths_y: jax.Array,
    bandwidth: int | None,
    chunks: int,
) -> jax.Array:
    """[n, m, B] costs -> the wavefront's costs, [S, n, W] (C chunks of W = ⌈B/C⌉ examples).

    First the wide matrix [n, N, W], N = C·(m+1)+1: chunk c's matrices sit side
    by side in columns c·(m+1)+1 … c·(m+1)+m; the columns before, between and
    after them are walls of +∞, as is every cell outside an example's valid
    region or band (and the padding examples). Then `_skew` puts each
    anti-diagonal in one row, so that scan step s reads its costs as a slice.
    """
    n, m, batch = cost.shape
    width = -(-batch // chunks)
    rows = jnp.arange(1, n + 1)[:, None, None]
    columns = jnp.arange(1, m + 1)[None, :, None]
    valid = (rows <= lengths_x) & (columns <= lengths_y)
    if bandwidth is not None:
        valid &= jnp.abs(rows - columns) <= bandwidth
    cost = jnp.where(valid, cost, _INF)
    cost = jnp.pad(cost, [(0, 0), (0, 0), (0, chunks * width - batch)], constant_values=_INF)
    cost = jnp.transpose(cost.reshape(n, m, chunks, width), (0, 2, 1, 3))
    cost = jnp.pad(cost, [(0, 0), (0, 0), (1, 0), (0, 0)], constant_values=_INF)
    cost = cost.reshape(n, chunks * (m + 1), width)
    return _skew(jnp.pad(cost, [(0, 0), (0, 1), (0, 0)], constant_values=_INF))


def _skew(wide: jax.Array) -> jax.Array:
    """[n, N, W] -> [S, n, W], S = n + N − 1, entry [s, i] = wide[i, s − i] (+∞ off the matrix).

    Row i is shifted right by i with one reshape: rows padded to N + n and
    read back with stride N + n − 1.
    """
    n, num_columns, width = wide.shape
    row_length = num_columns + n
    flat = jnp.pad(wide, [(0, 0), (0, n), (0, 0)], constant_values=_INF)
    flat = flat.reshape(n * row_length, width)[: n * (row_length - 1)]
    return jnp.transpose(flat.reshape(n, row_length - 1, width), (1, 0, 2))


def _unskew(by_step: jax.Array, num_columns: int) -> jax.Array:
    """Inverse of `_skew`: [S, n, W] -> [n, N, W], entry [i, j] = by_step[i + j, i]."""
    num_steps, n, width = by_step.shape
    flat = jnp.transpose(by_step, (1, 0, 2)).reshape(n * num_steps, width)
    flat = jnp.pad(flat, [(0, n), (0, 0)]).reshape(n, num_steps + 1, width)
    return flat[:, :num_columns]


def _end_cells(
    lengths_x: jax.Array, lengths_y: jax.Array, m: int, chunks: int, width: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Wavefront step, row and lane of each example's end cell (len_x, len_y), each [C, W]."""
    padding = chunks * width - lengths_x.shape[0]
    rows = jnp.pad(lengths_x, (0, padding), constant_values=1).reshape(chunks, width) - 1
    columns = jnp.pad(lengths_y, (0, padding), constant_values=1).reshape(chunks, width)
    columns += jnp.arange(chunks)[:, None] * (m + 1)  # Wide column of (len_x, len_y).
    lanes = jnp.broadcast_to(jnp.arange(width), (chunks, width))
    return rows + columns, rows, lanes


def _wavefront(
    cost_by_step: jax.Array, m: int, gamma: float, keep_weights: bool
) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """Runs eq. 4 over the anti-diagonals of the wide matrix.

    Args:
      cost_by_step: [S, n, W] costs from `_to_wavefront_layout`.
      m: Columns per matrix.
      gamma: Soft-min parameter.
      keep_weights: Whether to return the predecessor weights.

    Returns:
      r of every cell, [S, n, W] (entry [s, i] is wide cell (i, s − i),
      0-based), and, if `keep_weights`, the weights of the up and left
      predecessors of every cell, each [S, n, W]; the diagonal predecessor's
      weight is 1 minus their sum.
    """
    num_steps, n, width = cost_by_step.shape
    dtype = cost_by_step.dtype
    border = jnp.full((1, width), _INF, dtype)
    # r_{0,0} = 0 sits diagonally before each matrix's first cell, above its wall.
    origin = jnp.where(jnp.arange(num_steps) % (m + 1) == 1, 0.0, _INF).astype(dtype)

    def step(carry, inputs):
        previous, before_previous = carry  # r on steps s − 1 and s − 2, [n, W].
        cost, origin_s = inputs  # δ on step s, [n, W]; r_{0,0} or +∞.
        soft, weights = soft_minimum_and_weights(
            jnp.concatenate([border, previous[:-1]]),  # r_{i-1, j}
            previous,  # r_{i, j-1}
            jnp.concatenate([jnp.broadcast_to(origin_s, (1, width)), before_previous[:-1]]),
            gamma,
            keep_weights,
        )
        r = cost + soft
        return (r, previous), (r, weights)

    walls = jnp.full((n, width), _INF, dtype)
    _, (r, weights) = lax.scan(step, (walls, walls), (cost_by_step, origin))
    return r, weights


def _forward(cost, lengths_x, lengths_y, gamma, bandwidth, chunks, keep_weights):
    """[n, m, B] costs -> [B] values, the wavefront's weights (or None) and end cells."""
    _, m, batch = cost.shape
    cost_by_step = _to_wavefront_layout(cost, lengths_x, lengths_y, bandwidth, chunks)
    r, weights = _wavefront(cost_by_step, m, gamma, keep_weights)
    end_cells = _end_cells(lengths_x, lengths_y, m, chunks, cost_by_step.shape[-1])
    return r[end_cells].reshape(-1)[:batch], weights, end_cells


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _soft_dtw_batch_last(
    cost: jax.Array,
    lengths_x: jax.Array,
    lengths_y: jax.Array,
    gamma: float,
    bandwidth: int | None,
    chunks: int,
) -> jax.Array:
    """[n, m, B] costs, [B] lengths -> [B] values."""
    return _forward(cost, lengths_x, lengths_y, gamma, bandwidth, chunks, keep_weights=False)[0]


def _soft_dtw_batch_last_fwd(cost, lengths_x, lengths_y, gamma, bandwidth, chunks):
    value, weights, end_cells = _forward(
        cost, lengths_x, lengths_y, gamma, bandwidth, chunks, keep_weights=True
    )
    return value, (weights, end_cells, jnp.isfinite(value), cost.shape)


def _soft_dtw_batch_last_bwd(gamma, bandwidth, chunks, residuals, value_cotangent):
    del gamma, bandwidth  # Already folded into the saved weights.
    (up, left), end_cells, reachable, (n, m, batch) = residuals
    num_steps, _, width = up.shape
    seed = jnp.where(reachable, value_cotangent, 0.0).astype(up.dtype)
    seed = jnp.pad(seed, (0, chunks * width - batch)).reshape(chunks, width)
    seeds = jnp.zeros_like(up).at[end_cells].add(seed)
    zero_row = jnp.zeros((1, width), up.dtype)

    def step(carry, inputs):
        # E_{i,j} = E_{i+1,j} w^up_{i+1,j} + E_{i,j+1} w^left_{i,j+1}
        #         + E_{i+1,j+1} w^diag_{i+1,j+1}: the successors of step s
        # already pushed their shares into `from_next` (from step s + 1) and
        # `from_after_next` (from step s + 2).
        from_next, from_after_next, to_next_but_one = carry
        seed_s, weight_up, weight_left = inputs
        weight_diagonal = 1.0 - weight_up - weight_left  # Exact where E ≠ 0 (reachable cells).
        e = from_next + from_after_next + seed_s
        to_previous = jnp.concatenate([(e * weight_up)[1:], zero_row]) + e * weight_left
        to_before_previous = jnp.concatenate([(e * weight_diagonal)[1:], zero_row])
        return (to_previous, to_next_but_one, to_before_previous), e

    zeros = jnp.zeros((n, width), up.dtype)
    _, e = lax.scan(step, (zeros, zeros, zeros), (seeds, up, left), reverse=True)
    e = _unskew(e, num_steps - n + 1)  # Wide matrix [n, N, W]; drop the walls.
    e = e[:, :-1].reshape(n, chunks, m + 1, width)[:, :, 1:]
    e = jnp.transpose(e, (0, 2, 1, 3)).reshape(n, m, chunks * width)[..., :batch]
    return e, None, None


_soft_dtw_batch_last.defvjp(_soft_dtw_batch_last_fwd, _soft_dtw_batch_last_bwd)


def _full_lengths(lengths: jax.Array | None, size: int, batch_shape: tuple[int, ...]) -> jax.Array:
    if lengths is None:
        return jnp.full(batch_shape, size, jnp.int32)
    return jnp.broadcast_to(jnp.asarray(lengths, jnp.int32), batch_shape)


def check_arguments(gamma: float, n: int, m: int, bandwidth: int | None,
                    lengths_given: bool, name: str = "soft_dtw") -> None:
    """Raises ValueError, naming the argument, for what can be checked when tracing.

    γ must be a finite number > 0 and the matrices at least 1×1; a band
    narrower than |n − m| (without per-example lengths) admits no path. The
    per-example lengths are traced values: outside 1…n (1…m), or with a band
    narrower than |len_x − len_y|, the value is +∞ with a zero gradient.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"{name}: gamma must be a finite number > 0, got {gamma!r}")
    if n < 1 or m < 1:
        raise ValueError(f"{name}: the cost matrices are {n}x{m}; they need at least one "
                         "row and one column")
    if bandwidth is not None and bandwidth < 0:
        raise ValueError(f"{name}: bandwidth must be >= 0 or None, got {bandwidth!r}")
    if bandwidth is not None and not lengths_given and bandwidth < abs(n - m):
        raise ValueError(f"{name}: bandwidth={bandwidth} is narrower than |n - m| = "
                         f"{abs(n - m)}: no alignment path fits in the band")


@functools.partial(jax.jit, static_argnames=("gamma", "bandwidth", "batch_last", "chunks"))
def soft_dtw(
    cost: jax.Array,
    gamma: float = 1.0,
    *,
    lengths_x: jax.Array | None = None,
    lengths_y: jax.Array | None = None,
    bandwidth: int | None = None,
    batch_last: bool = False,
    chunks: int | None = None,
) -> jax.Array:
    """Soft-DTW value r_{n,m} of eq. 4 for a batch of cost matrices.

    Differentiable in `cost` through a custom VJP (the expected-alignment
    recursion, not autodiff through the scan). Second order (Hessian-vector
    products as jvp-of-grad or grad-of-grad, `jax.hessian`) works by
    differentiating through that backward recursion: correct, but not
    optimised. `jax.jvp` of the value itself is not supported (a
    `jax.custom_vjp` limitation).

    Args:
      cost: [..., n, m] pairwise costs δ_{i,j} ([n, m, ...] with
        `batch_last`). Computation is in float32 (or float64 for float64
        inputs): bfloat16/float16 costs are accumulated in float32, the value
        is float32 and the gradient has `cost`'s dtype.
      gamma: Soft-min parameter γ > 0 (a Python float). Stable in float32 from
        1e-3 to 10 and beyond.
      lengths_x: Optional int array broadcastable to [...]: number of valid rows
        per example (1 ≤ len ≤ n); the valid region is the top-left corner.
        Lengths are traced, so they are not checked: out of range they give
        +∞ (see `check_arguments`, which checks the rest).
      lengths_y: Optional int array broadcastable to [...]: valid columns
        (1 ≤ len ≤ m).
      bandwidth: Optional Sakoe–Chiba radius: only cells with |i − j| ≤ bandwidth
        are allowed. Must be ≥ |len_x − len_y|, otherwise the value is +∞ (with
        a zero gradient).
      batch_last: Whether `cost` is laid out [n, m, ...]. The computation runs
        batch-last internally, so this skips a transpose.
      chunks: How many groups of examples share one wavefront (a speed knob;
        the result does not depend on it). Default: one group per 256
        examples on CPU, a single group on accelerators.

    Returns:
      [...] values r_{len_x, len_y}. The gradient w.r.t. `cost` is the expected
      alignment matrix, zero outside each example's valid region.
    """
    if chunks is not None and chunks < 1:
        raise ValueError(f"soft_dtw: chunks must be a positive int or None, got {chunks!r}.")
    if not batch_last:
        cost = jnp.moveaxis(cost, (-2, -1), (0, 1))
    n, m, *batch_shape = cost.shape
    check_arguments(gamma, n, m, bandwidth, lengths_given=not (lengths_x is None and
                                                               lengths_y is None))
    batch_shape = tuple(batch_shape)
    dtype = jnp.promote_types(cost.dtype, jnp.float32)
    values = _soft_dtw_batch_last(
        cost.astype(dtype).reshape(n, m, -1),
        _full_lengths(lengths_x, n, batch_shape).reshape(-1),
        _full_lengths(lengths_y, m, batch_shape).reshape(-1),
        float(gamma),
        bandwidth,
        chunks or _default_chunks(math.prod(batch_shape)),
    )
    return values.reshape(batch_shape)


@functools.partial(jax.jit, static_argnames=("gamma", "bandwidth"))
def expected_alignment(
    cost: jax.Array,
    gamma: float = 1.0,
    *,
    lengths_x: jax.Array | None = None,
    lengths_y: jax.Array | None = None,
    bandwidth: int | None = None,
) -> jax.Array:
    """Expected alignment matrix E = ∂ soft_dtw / ∂ cost (the matrix M of §4.1).

    E_{i,j} is the probability that an alignment path drawn from the Gibbs
    distribution p(A) ∝ exp(−⟨A, Δ⟩/γ) visits cell (i, j); as γ → 0 it tends
    to the optimal DTW path.

    Args:
      cost: [..., n, m] costs.
      gamma: Soft-min parameter γ > 0.
      lengths_x: See `soft_dtw`.
      lengths_y: See `soft_dtw`.
      bandwidth: See `soft_dtw`.

    Returns:
      [..., n, m] alignment probabilities in [0, 1] (dtype of `cost`), zero
      outside the valid region.
    """
    return jax.grad(
        lambda c: jnp.sum(
            soft_dtw(c, gamma, lengths_x=lengths_x, lengths_y=lengths_y, bandwidth=bandwidth)
        )
    )(cost)


def l2_normalize(x: jax.Array, epsilon: float = 1e-12) -> jax.Array:
    """x / max(‖x‖₂, ε) along the last axis.

    Zero vectors (padding) stay zero, with a finite (zero) gradient.

    Args:
      x: [..., d].
      epsilon: Lower bound on the norm.

    Returns:
      [..., d] unit vectors, dtype of `x` (the norm is computed in float32,
      or float64 for float64 inputs).
    """
    squared_norm = jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32))),
                           axis=-1, keepdims=True)
    inverse_norm = lax.rsqrt(jnp.maximum(squared_norm, epsilon**2))
    return (x * inverse_norm).astype(x.dtype)


def pairwise_distance(
    x: jax.Array,
    y: jax.Array,
    distance: Distance = "neg_dot",
    *,
    all_pairs: bool = False,
    batch_last: bool = False,
) -> jax.Array:
    """Pairwise distance matrices Δ(X, Y) = [δ(x_i, y_j)]_{ij}.

    Distances: "neg_dot" −⟨x, y⟩ (the VT-TWINS release's choice, on
    L2-normalised embeddings), "cosine" 1 − cos(x, y), "sq_euclidean" ‖x − y‖².
    Products are accumulated in at least float32.

    Args:
      x: [..., n, d] (or [B, n, d] with `all_pairs`).
      y: [..., m, d] with matching leading dims (or [C, m, d] with `all_pairs`).
      distance: One of the names above.
      all_pairs: If True, compare every sequence of `x` with every sequence of
        `y` using one [B·n, d] × [d, C·m] matrix product.
      batch_last: With `all_pairs`, return [n, m, B, C] (the layout `soft_dtw`
        and `s2dtw_from_distances` take with `batch_last=True`).

    Returns:
      [..., n, m]; with `all_pairs`, [B, C, n, m] or [n, m, B, C].
    """
    accumulation = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    x_squared = jnp.sum(jnp.square(x.astype(accumulation)), -1)
    y_squared = jnp.sum(jnp.square(y.astype(accumulation)), -1)
    if all_pairs:
        (num_x, n, dim), (num_y, m, _) = x.shape, y.shape
        # Rows ordered (position, sequence): the product is [n, B, m, C] and
        # moving m before B copies contiguous runs of C values.
        gram = jnp.matmul(
            jnp.swapaxes(x, 0, 1).reshape(n * num_x, dim),
            jnp.swapaxes(y, 0, 1).reshape(m * num_y, dim).T,
            preferred_element_type=accumulation,
        ).reshape(n, num_x, m, num_y)
        gram = jnp.transpose(gram, (0, 2, 1, 3) if batch_last else (1, 3, 0, 2))
        if batch_last:
            x_squared = x_squared.T[:, None, :, None]
            y_squared = y_squared.T[None, :, None, :]
        else:
            x_squared = x_squared[:, None, :, None]
            y_squared = y_squared[None, :, None, :]
    else:
        gram = jnp.einsum("...id,...jd->...ij", x, y, preferred_element_type=accumulation)
        x_squared = x_squared[..., :, None]
        y_squared = y_squared[..., None, :]
    if distance == "neg_dot":
        return -gram
    if distance == "cosine":
        return 1.0 - gram * lax.rsqrt(jnp.maximum(x_squared * y_squared, 1e-24))
    if distance == "sq_euclidean":
        return jnp.maximum(x_squared + y_squared - 2.0 * gram, 0.0)
    raise ValueError(f"Unknown distance {distance!r}; expected one of {Distance.__args__}.")


def soft_dtw_divergence(
    x: jax.Array,
    y: jax.Array,
    distance: Distance | Callable[[jax.Array, jax.Array], jax.Array] = "sq_euclidean",
    gamma: float = 1.0,
    *,
    lengths_x: jax.Array | None = None,
    lengths_y: jax.Array | None = None,
    bandwidth: int | None = None,
) -> jax.Array:
    """Soft-DTW divergence sdtw(X, Y) − ½(sdtw(X, X) + sdtw(Y, Y)).

    (Blondel, Mensch & Vert, 2021.) Zero for X = Y; non-negative for the
    squared Euclidean distance.

    Args:
      x: [..., n, d] sequences.
      y: [..., m, d] sequences.
      distance: A name accepted by `pairwise_distance` or a function mapping
        ([..., n, d], [..., m, d]) to [..., n, m] costs.
      gamma: Soft-min parameter γ > 0.
      lengths_x: Optional [...] valid lengths of `x`.
      lengths_y: Optional [...] valid lengths of `y`.
      bandwidth: Optional Sakoe–Chiba radius, applied to all three terms.

    Returns:
      [...] divergences.
    """
    if isinstance(distance, str):
        distance = functools.partial(pairwise_distance, distance=distance)

    def value(a, b, lengths_a, lengths_b):
        return soft_dtw(
            distance(a, b), gamma, lengths_x=lengths_a, lengths_y=lengths_b, bandwidth=bandwidth
        )

    return value(x, y, lengths_x, lengths_y) - 0.5 * (
        value(x, x, lengths_x, lengths_x) + value(y, y, lengths_y, lengths_y)
    )
