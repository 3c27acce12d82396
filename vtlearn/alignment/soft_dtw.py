"""Soft-DTW (Cuturi & Blondel, 2017) for batches of cost matrices.

The value is eq. 4 of Ko et al. (2022) (VT-TWINS)::

    r_{i,j} = δ_{i,j} + min^γ{r_{i-1,j}, r_{i,j-1}, r_{i-1,j-1}},
    r_{0,0} = 0,  r_{i,0} = r_{0,j} = +∞  (i, j ≥ 1),

with the soft minimum of eq. 3, and `soft_dtw` returns r_{n,m} (or
r_{len_x,len_y} for per-example valid lengths).

Implementation: R is processed one anti-diagonal (i + j = const) at a time, so
the forward pass is a `jax.lax.scan` of n+m−1 steps, each vectorised over the
diagonal and the batch. Internally the batch is the minor axis: costs are
``[n, m, batch]`` and a diagonal is ``[row, batch]``, so the three
predecessors of a cell are the previous diagonals shifted by zero or one row
(slices), and step t reads its costs δ_{i,t−i} as n contiguous batch-rows.
Callers that can produce costs batch-last (the S2DTW loss does) skip the
transpose from the usual ``[..., n, m]`` layout with ``batch_last=True``.

Cost model: on a CPU, where a large batch already fills the vector units,
time is the number of cells evaluated times the cost of their exponentials
and log. A diagonal is stored n+1 rows wide, so the scan evaluates about
(n+m−1)·(n+1) cells against the n·m of a row-by-row scan (about 2× for
n = m), and there the two run at similar speed; the anti-diagonal layout
pays off where sequential steps are the cost (accelerators, small batches,
long sequences). `benchmarks/s2dtw_loss.py` measures both.

The backward pass is a `jax.custom_vjp`: the forward saves, per cell, the
soft-min weights of its up and left predecessors (the probabilities with which
the Gibbs distribution over alignment paths reaches the cell from each; the
diagonal one is the remainder), and a reverse scan over the diagonals
accumulates the expected alignment E = ∂r_{n,m}/∂δ (Cuturi & Blondel, Alg. 2).
"""

from collections.abc import Callable
import functools
from typing import Literal

import jax
from jax import lax
import jax.numpy as jnp

Distance = Literal["neg_dot", "cosine", "sq_euclidean"]

_INF = float("inf")


def soft_minimum(a: jax.Array, b: jax.Array, c: jax.Array, gamma: float) -> jax.Array:
    """Soft minimum of three arrays, eq. 3: −γ log(e^{−a/γ} + e^{−b/γ} + e^{−c/γ}).

    Computed by subtracting the (stop-gradient) minimum before dividing by γ, so
    it is stable for small γ. +∞ entries are ignored; if all three are +∞ the
    result is +∞ with a zero (not NaN) gradient.

    Args:
      a: Array of any shape.
      b: Array broadcastable with `a`.
      c: Array broadcastable with `a`.
      gamma: Smoothing parameter γ > 0.

    Returns:
      Array of the broadcast shape.
    """
    smallest = lax.stop_gradient(jnp.minimum(jnp.minimum(a, b), c))
    reachable = jnp.isfinite(smallest)
    shift = jnp.where(reachable, smallest, 0.0)
    inverse_gamma = 1.0 / gamma  # Multiplying: a divide made this ~1.6x slower on CPU.
    total = (
        jnp.exp((shift - a) * inverse_gamma)
        + jnp.exp((shift - b) * inverse_gamma)
        + jnp.exp((shift - c) * inverse_gamma)
    )
    safe_total = jnp.where(reachable, total, 1.0)
    return jnp.where(reachable, shift - gamma * jnp.log(safe_total), _INF)


def _soft_minimum_and_weights(
    up: jax.Array, left: jax.Array, diagonal: jax.Array, gamma: float, with_weights: bool
) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """`soft_minimum` and, optionally, its softmax weights for `up` and `left`.

    (The weight of `diagonal` is 1 minus their sum.) Weights of +∞ entries are
    zero. Used inside the scans only (it is not differentiated).
    """
    smallest = jnp.minimum(jnp.minimum(up, left), diagonal)
    shift = jnp.where(jnp.isfinite(smallest), smallest, 0.0)
    inverse_gamma = 1.0 / gamma  # Multiplying: a divide made this ~1.6x slower on CPU.
    exp_up = jnp.exp((shift - up) * inverse_gamma)
    exp_left = jnp.exp((shift - left) * inverse_gamma)
    exp_diagonal = jnp.exp((shift - diagonal) * inverse_gamma)
    # total >= 1 wherever some entry is finite (the minimum contributes e^0 = 1).
    total = jnp.maximum(exp_up + exp_left + exp_diagonal, 1.0)
    value = smallest - gamma * jnp.log(total)
    if not with_weights:
        return value, None
    inverse_total = 1.0 / total
    return value, (exp_up * inverse_total, exp_left * inverse_total)


def _valid_cells(
    t: jax.Array,
    rows: jax.Array,
    lengths_x: jax.Array,
    lengths_y: jax.Array,
    bandwidth: int | None,
) -> jax.Array:
    """[n, B] mask of the cells (i, j = t + 2 − i) of diagonal t (1-based i, j)
    inside each example's valid region and the band."""
    columns = t + 2 - rows
    valid = (columns >= 1) & (rows <= lengths_x) & (columns <= lengths_y)
    if bandwidth is not None:
        valid &= jnp.abs(rows - columns) <= bandwidth
    return valid


def _forward_scan(
    cost: jax.Array,
    lengths_x: jax.Array,
    lengths_y: jax.Array,
    gamma: float,
    bandwidth: int | None,
    keep_weights: bool,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """Runs eq. 4 over the n + m − 1 anti-diagonals.

    Args:
      cost: [n, m, B] costs.
      lengths_x: [B] valid rows.
      lengths_y: [B] valid columns.
      gamma: Soft-min parameter.
      bandwidth: Sakoe–Chiba radius or None.
      keep_weights: Whether to return the predecessor weights.

    Returns:
      r_{len_x, len_y} [B] and, if `keep_weights`, the weights of the up and
      left predecessors (r_{i-1,j}, r_{i,j-1}) of every cell, each [K, n, B]
      with K = n + m − 1 (entry [t, i − 1] is cell (i, t + 2 − i)); the
      diagonal predecessor's weight is 1 minus their sum.
    """
    n, m, batch = cost.shape
    dtype = cost.dtype
    border_row = jnp.full((1, batch), _INF, dtype)
    # Diagonals are row-indexed [n + 1, B], with the border row i = 0 on top.
    diagonal_1 = jnp.full((n + 1, batch), _INF, dtype)  # r_{0,1}, r_{1,0}, …
    diagonal_0 = diagonal_1.at[0].set(0.0)  # r_{0,0} = 0.
    rows = lax.broadcasted_iota(jnp.int32, (n, 1), 0) + 1
    row_index = jnp.arange(n)
    end_diagonal = lengths_x + lengths_y - 2

    def step(carry, t):
        previous, before_previous, at_end = carry
        soft, weights = _soft_minimum_and_weights(
            previous[:-1],  # r_{i-1, j}
            previous[1:],  # r_{i, j-1}
            before_previous[:-1],  # r_{i-1, j-1}
            gamma,
            keep_weights,
        )
        # δ_{i, t+2-i}: a gather of n contiguous batch-rows (off-matrix rows are masked).
        cost_t = cost[row_index, jnp.clip(t - row_index, 0, m - 1)]
        valid = _valid_cells(t, rows, lengths_x, lengths_y, bandwidth)
        r = jnp.where(valid, cost_t + soft, _INF)
        at_end = jnp.where(t == end_diagonal, r, at_end)  # Diagonal of (len_x, len_y).
        return (jnp.concatenate([border_row, r]), previous, at_end), weights

    initial = (diagonal_1, diagonal_0, jnp.zeros((n, batch), dtype))
    (_, _, at_end), weights = lax.scan(step, initial, jnp.arange(n + m - 1))
    value = jnp.sum(jnp.where(rows == lengths_x, at_end, 0.0), axis=0)
    return value, weights


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _soft_dtw_batch_last(
    cost: jax.Array,
    lengths_x: jax.Array,
    lengths_y: jax.Array,
    gamma: float,
    bandwidth: int | None,
) -> jax.Array:
    """[n, m, B] costs, [B] lengths -> [B] values."""
    value, _ = _forward_scan(cost, lengths_x, lengths_y, gamma, bandwidth, keep_weights=False)
    return value


def _soft_dtw_batch_last_fwd(cost, lengths_x, lengths_y, gamma, bandwidth):
    value, weights = _forward_scan(cost, lengths_x, lengths_y, gamma, bandwidth, keep_weights=True)
    return value, (weights, lengths_x, lengths_y, jnp.isfinite(value))


def _soft_dtw_batch_last_bwd(gamma, bandwidth, residuals, value_cotangent):
    del gamma, bandwidth  # Already folded into the saved weights.
    (up, left), lengths_x, lengths_y, reachable = residuals
    num_diagonals, n, batch = up.shape
    m = num_diagonals - n + 1
    rows = lax.broadcasted_iota(jnp.int32, (n, 1), 0) + 1
    end_diagonal = lengths_x + lengths_y - 2
    seed = jnp.where(reachable, value_cotangent, 0.0)
    zero_row = jnp.zeros((1, batch), up.dtype)

    def step(carry, inputs):
        # E_{i,j} = E_{i+1,j} w^up_{i+1,j} + E_{i,j+1} w^left_{i,j+1}
        #         + E_{i+1,j+1} w^diag_{i+1,j+1}: the successors of diagonal t
        # already pushed their shares into `from_next` (from diagonal t + 1)
        # and `from_after_next` (from diagonal t + 2).
        from_next, from_after_next, to_next_but_one, e_by_diagonal = carry
        t, weight_up, weight_left = inputs
        weight_diagonal = 1.0 - weight_up - weight_left  # Exact where E ≠ 0 (reachable cells).
        is_end = (t == end_diagonal) & (rows == lengths_x)
        e = from_next + from_after_next + jnp.where(is_end, seed, 0.0)
        to_previous = jnp.concatenate([(e * weight_up)[1:], zero_row]) + e * weight_left
        to_before_previous = jnp.concatenate([(e * weight_diagonal)[1:], zero_row])
        e_by_diagonal = lax.dynamic_update_index_in_dim(e_by_diagonal, e, t, axis=1)
        return (to_previous, to_next_but_one, to_before_previous, e_by_diagonal), None

    zeros = jnp.zeros((n, batch), up.dtype)
    initial = (zeros, zeros, zeros, jnp.zeros((n, num_diagonals, batch), up.dtype))
    (*_, e_by_diagonal), _ = lax.scan(
        step, initial, (jnp.arange(num_diagonals), up, left), reverse=True
    )
    # e_by_diagonal[i, t] holds E of cell (i, t − i) (0-based): row i is a slice.
    return jnp.stack([e_by_diagonal[i, i : i + m] for i in range(n)]), None, None


_soft_dtw_batch_last.defvjp(_soft_dtw_batch_last_fwd, _soft_dtw_batch_last_bwd)


def _full_lengths(lengths: jax.Array | None, size: int, batch_shape: tuple[int, ...]) -> jax.Array:
    if lengths is None:
        return jnp.full(batch_shape, size, jnp.int32)
    return jnp.broadcast_to(jnp.asarray(lengths, jnp.int32), batch_shape)


@functools.partial(jax.jit, static_argnames=("gamma", "bandwidth", "batch_last"))
def soft_dtw(
    cost: jax.Array,
    gamma: float = 1.0,
    *,
    lengths_x: jax.Array | None = None,
    lengths_y: jax.Array | None = None,
    bandwidth: int | None = None,
    batch_last: bool = False,
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
      lengths_y: Optional int array broadcastable to [...]: valid columns
        (1 ≤ len ≤ m).
      bandwidth: Optional Sakoe–Chiba radius: only cells with |i − j| ≤ bandwidth
        are allowed. Must be ≥ |len_x − len_y|, otherwise the value is +∞ (with
        a zero gradient).
      batch_last: Whether `cost` is laid out [n, m, ...]. The computation runs
        batch-last internally, so this skips a transpose.

    Returns:
      [...] values r_{len_x, len_y}. The gradient w.r.t. `cost` is the expected
      alignment matrix, zero outside each example's valid region.
    """
    if not batch_last:
        cost = jnp.moveaxis(cost, (-2, -1), (0, 1))
    n, m, *batch_shape = cost.shape
    batch_shape = tuple(batch_shape)
    dtype = jnp.promote_types(cost.dtype, jnp.float32)
    values = _soft_dtw_batch_last(
        cost.astype(dtype).reshape(n, m, -1),
        _full_lengths(lengths_x, n, batch_shape).reshape(-1),
        _full_lengths(lengths_y, m, batch_shape).reshape(-1),
        float(gamma),
        bandwidth,
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
      [..., d] unit vectors, dtype of `x` (the norm is computed in float32).
    """
    squared_norm = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
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
