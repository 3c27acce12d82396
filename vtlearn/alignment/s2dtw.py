"""S2DTW: locally smoothed soft-DTW with weak alignment (Ko et al., 2022, §4.1–4.2).

Order of operations follows Algorithm 1 (lines 4–12), smoothing before the
dummies, as the authors' release does (§4.2's "this weak alignment framework is
followed by the local neighborhood smoothing" reads the other way round, but
smoothing a matrix of dummies would smear φ into every real pair):

1. Δ = [δ(x_i, y_j)]: pairwise distances (default −⟨x̂, ŷ⟩ of L2-normalised
   embeddings, as in the authors' release).
2. Local neighbourhood smoothing, eq. 5:
   δ̂_{i,j} = δ_{i,j} + min^γ'{δ_{i-1,j}, δ_{i,j-1}, δ_{i-1,j-1}}.
   Boundary conditions (the paper leaves them implicit; we use the ones of the
   DTW recursion it mirrors, eq. 4): δ_{0,0} = 0 and δ_{i,0} = δ_{0,j} = +∞ for
   i, j ≥ 1, i.e. missing neighbours drop out of the soft-min. Hence
   δ̂_{1,1} = δ_{1,1}, δ̂_{1,j} = δ_{1,j} + δ_{1,j-1}, δ̂_{i,1} = δ_{i,1} + δ_{i-1,1}.
   The release instead puts the origin value 0 into all three neighbour slots
   of cell (1, 1), giving δ̂_{1,1} = δ_{1,1} − γ' log 3 (`smoothing_origin=
   "release"`); all other cells agree.
3. Weak alignment (merge(Δ̂, φ)): dummy elements are inserted between and
   around the elements of both sequences, X^φ = [φ, x_1, φ, …, x_n, φ], and
   every pair involving a dummy costs φ, giving a (2n+1)×(2m+1) matrix Δ̂^φ.
4. Soft-DTW recursion, eq. 6, on Δ̂^φ with parameter γ; the value is r̂ at the
   bottom-right corner.

Variable lengths: masks are prefix masks (valid elements first). Dummies are
placed only around valid elements (the first 2·len+1 rows/columns of Δ̂^φ)
and the value is read at the corner of that valid region; distances outside
the valid region never influence the value and receive zero gradient.
Padding embeddings must be finite (zeros are fine).

When is an element skipped? A path through a dummy row or column costs φ per
cell, a real pair costs δ̂. With the release's defaults (negative dot product
of unit vectors, δ ∈ [−1, 1], and smoothing adding the neighbours' soft
minimum, so δ̂ ∈ [−2 − γ log 3, 2]) a caption is routed through dummies only
where δ̂ > φ = 0.5, i.e. where it and its neighbourhood are *anti*-correlated
with the clips (the paper's Fig. 5 shows such matrices, "most elements greater
than zero"); an irrelevant caption that is merely orthogonal (δ ≈ 0) next to
well-aligned pairs (δ ≈ −1) has δ̂ ≈ −1 and stays aligned. With
`distance="cosine"` (δ = 1 − cos ∈ [0, 2]) orthogonal pairs already exceed φ.
`test_orthogonal_caption_is_skipped_under_cosine_but_not_negative_dot` in
`tests/alignment/test_s2dtw.py` shows both (without smoothing). The flip
side: untrained embeddings are nearly orthogonal too, so under cosine with
φ = 0.5 the first steps route almost every path through dummies and the
gradient vanishes (∂S2DTW/∂Δ summed over the 4 × 4 pairs of two random
512-d sequences, mean of 64: 0.014 under cosine with φ = 0.5, 0.66 with
φ = 1.0, 6.2 with φ = 1.5, 7.4 under the negative dot product with φ = 0.5).
Under cosine, choose φ above the smoothed distance of unrelated pairs.

Everything can run batch-last ([n, m, ...] distance matrices, `batch_last=True`),
the layout the soft-DTW scan uses internally.
"""

import functools
import math
from typing import Literal

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from vtlearn.alignment.soft_dtw import Distance
from vtlearn.alignment.soft_dtw import l2_normalize
from vtlearn.alignment.soft_dtw import pairwise_distance
from vtlearn.alignment.soft_dtw import soft_dtw
from vtlearn.alignment.soft_dtw import soft_minimum_and_weights

SmoothingOrigin = Literal["paper", "release"]

DEFAULT_GAMMA = 0.1  # Release: γ of both the smoothing soft-min and the recursion.
DEFAULT_PHI = 0.5  # Release: dummy distance ("threshold").


def _to_batch_last(delta: jax.Array) -> jax.Array:
    return jnp.moveaxis(delta, (-2, -1), (0, 1))


def _to_batch_first(delta: jax.Array) -> jax.Array:
    return jnp.moveaxis(delta, (0, 1), (-2, -1))


def local_neighborhood_smoothing(
    delta: jax.Array,
    gamma: float = DEFAULT_GAMMA,
    *,
    origin: SmoothingOrigin = "paper",
    batch_last: bool = False,
) -> jax.Array:
    """Eq. 5: δ̂_{i,j} = δ_{i,j} + min^γ{δ_{i-1,j}, δ_{i,j-1}, δ_{i-1,j-1}}.

    Differentiable through a custom VJP (the soft-min's softmax weights are
    saved, so the backward pass is three shifted multiply-adds).

    Args:
      delta: [..., n, m] pairwise distances ([n, m, ...] with `batch_last`).
      gamma: Soft-min parameter of the smoothing.
      origin: "paper": δ_{0,0} = 0 and δ_{i,0} = δ_{0,j} = +∞ (so δ̂_{1,1} =
        δ_{1,1}); "release": the authors' code, where cell (1, 1) sees the value
        0 in all three neighbour slots (δ̂_{1,1} = δ_{1,1} − γ log 3).
      batch_last: Whether `delta` is laid out [n, m, ...].

    Returns:
      Smoothed distances Δ̂, same shape as `delta`.
    """
    if not batch_last:
        return _to_batch_first(
            local_neighborhood_smoothing(
                _to_batch_last(delta), gamma, origin=origin, batch_last=True
            )
        )
    if origin not in SmoothingOrigin.__args__:
        raise ValueError(
            f"Unknown smoothing origin {origin!r}; expected one of {SmoothingOrigin.__args__}."
        )
    return _smooth_batch_last(delta, float(gamma), origin)


def _neighbours(
    delta: jax.Array, origin: SmoothingOrigin
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """δ_{i-1,j}, δ_{i,j-1}, δ_{i-1,j-1} of every cell of [n, m, ...] `delta`, with eq. 5's borders."""
    n = delta.shape[0]
    border_row = jnp.full((1,) + delta.shape[1:], np.inf, delta.dtype)
    border_column = jnp.full((n, 1) + delta.shape[2:], np.inf, delta.dtype)
    up = jnp.concatenate([border_row, delta[:-1]])
    left = jnp.concatenate([border_column, delta[:, :-1]], axis=1)
    diagonal = jnp.concatenate([border_column, up[:, :-1]], axis=1).at[0, 0].set(0.0)
    if origin == "release":
        up, left = up.at[0, 0].set(0.0), left.at[0, 0].set(0.0)
    return up, left, diagonal


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _smooth_batch_last(delta: jax.Array, gamma: float, origin: SmoothingOrigin) -> jax.Array:
    return delta + soft_minimum_and_weights(*_neighbours(delta, origin), gamma, False)[0]


def _smooth_batch_last_fwd(delta, gamma, origin):
    soft, weights = soft_minimum_and_weights(*_neighbours(delta, origin), gamma, True)
    return delta + soft, weights


def _smooth_batch_last_bwd(gamma, origin, weights, cotangent):
    del gamma, origin  # Folded into the weights; border neighbours are constants.
    weight_up, weight_left = weights
    zero_row = jnp.zeros((1,) + cotangent.shape[1:], cotangent.dtype)
    zero_column = jnp.zeros((cotangent.shape[0], 1) + cotangent.shape[2:], cotangent.dtype)

    def from_below(x):  # Row i receives what row i + 1 sends up.
        return jnp.concatenate([x[1:], zero_row])

    def from_right(x):  # Column j receives what column j + 1 sends left.
        return jnp.concatenate([x[:, 1:], zero_column], axis=1)

    weight_diagonal = 1.0 - weight_up - weight_left
    return (
        cotangent
        + from_below(cotangent * weight_up)
        + from_right(cotangent * weight_left)
        + from_right(from_below(cotangent * weight_diagonal)),
    )


_smooth_batch_last.defvjp(_smooth_batch_last_fwd, _smooth_batch_last_bwd)


def insert_dummies(
    delta: jax.Array, phi: float = DEFAULT_PHI, *, batch_last: bool = False
) -> jax.Array:
    """merge(Δ, φ) of Algorithm 1: dummy rows/columns of cost φ around every element.

    Args:
      delta: [..., n, m] (smoothed) distances ([n, m, ...] with `batch_last`).
      phi: Dummy distance δ^φ.
      batch_last: Whether `delta` is laid out [n, m, ...].

    Returns:
      [..., 2n+1, 2m+1] ([2n+1, 2m+1, ...] with `batch_last`): entry
      (2i+1, 2j+1) is δ_{i,j} (0-based) and every pair that contains a dummy
      costs φ.
    """
    cell_padding = [(1, 1, 1), (1, 1, 1)]  # (low, high, interior) per cell axis.
    no_padding = [(0, 0, 0)] * (delta.ndim - 2)
    config = cell_padding + no_padding if batch_last else no_padding + cell_padding
    return lax.pad(delta, jnp.asarray(phi, delta.dtype), config)


def _lengths(mask: jax.Array | None, size: int, batch_shape: tuple[int, ...]) -> jax.Array:
    if mask is None:
        return jnp.full(batch_shape, size, jnp.int32)
    return jnp.broadcast_to(jnp.sum(mask, axis=-1, dtype=jnp.int32), batch_shape)


def s2dtw_from_distances(
    delta: jax.Array,
    *,
    gamma: float = DEFAULT_GAMMA,
    smoothing_gamma: float | None = None,
    phi: float = DEFAULT_PHI,
    mask_x: jax.Array | None = None,
    mask_y: jax.Array | None = None,
    local_smoothing: bool = True,
    weak_alignment: bool = True,
    smoothing_origin: SmoothingOrigin = "paper",
    batch_last: bool = False,
) -> jax.Array:
    """S2DTW value r̂ (eq. 6) from precomputed pairwise distances.

    With `local_smoothing=False` and `weak_alignment=False` this is plain
    soft-DTW on Δ (Table 6, rows 1–4); `weak_alignment` alone is row 5.

    Args:
      delta: [..., n, m] pairwise distances Δ(X, Y) ([n, m, ...] with
        `batch_last`).
      gamma: γ of the soft-DTW recursion (eq. 6).
      smoothing_gamma: γ of the smoothing soft-min (eq. 5); defaults to `gamma`.
      phi: Dummy distance δ^φ of the weak alignment.
      mask_x: Optional [..., n] bool prefix mask of valid elements of X
        (broadcastable against the batch dims of `delta`).
      mask_y: Optional [..., m] bool prefix mask of valid elements of Y.
      local_smoothing: Apply eq. 5.
      weak_alignment: Insert dummies (§4.2).
      smoothing_origin: Boundary at (0, 0) of eq. 5; see
        `local_neighborhood_smoothing`.
      batch_last: Whether `delta` is laid out [n, m, ...] (saves a transpose;
        the computation runs batch-last).

    Returns:
      [...] S2DTW values (float32 for bfloat16/float32 inputs).
    """
    if not batch_last:
        delta = _to_batch_last(delta)
    n, m, *batch_shape = delta.shape
    batch_shape = tuple(batch_shape)
    lengths_x = _lengths(mask_x, n, batch_shape)
    lengths_y = _lengths(mask_y, m, batch_shape)
    delta = delta.astype(jnp.promote_types(delta.dtype, jnp.float32))
    valid = (jnp.arange(n).reshape((n, 1) + (1,) * len(batch_shape)) < lengths_x) & (
        jnp.arange(m).reshape((m,) + (1,) * len(batch_shape)) < lengths_y
    )
    # Non-finite padding distances would otherwise leak NaN into valid gradients via eq. 5.
    delta = jnp.where(valid, delta, 0.0)
    if local_smoothing:
        if smoothing_gamma is not None and not (math.isfinite(smoothing_gamma)
                                                and smoothing_gamma > 0):
            raise ValueError(f"s2dtw: smoothing_gamma must be a finite number > 0 or None, "
                             f"got {smoothing_gamma!r}")
        delta = local_neighborhood_smoothing(
            delta,
            gamma if smoothing_gamma is None else smoothing_gamma,
            origin=smoothing_origin,
            batch_last=True,
        )
    if weak_alignment:
        delta = insert_dummies(delta, phi, batch_last=True)
        lengths_x, lengths_y = 2 * lengths_x + 1, 2 * lengths_y + 1
    return soft_dtw(delta, gamma, lengths_x=lengths_x, lengths_y=lengths_y, batch_last=True)


def s2dtw(
    x: jax.Array,
    y: jax.Array,
    *,
    gamma: float = DEFAULT_GAMMA,
    smoothing_gamma: float | None = None,
    phi: float = DEFAULT_PHI,
    distance: Distance = "neg_dot",
    normalize: bool = True,
    mask_x: jax.Array | None = None,
    mask_y: jax.Array | None = None,
    local_smoothing: bool = True,
    weak_alignment: bool = True,
    smoothing_origin: SmoothingOrigin = "paper",
) -> jax.Array:
    """S2DTW(X, Y) of Algorithm 1 between aligned batches of sequences.

    Args:
      x: [..., n, d] clip embeddings X.
      y: [..., m, d] caption embeddings Y (same leading dims).
      gamma: γ of the soft-DTW recursion (eq. 6).
      smoothing_gamma: γ of the smoothing (eq. 5); defaults to `gamma`.
      phi: Dummy distance δ^φ.
      distance: "neg_dot" (default, release), "cosine" (1 − cos) or
        "sq_euclidean"; see `pairwise_distance`.
      normalize: L2-normalise embeddings before the distance (release: yes).
      mask_x: Optional [..., n] bool prefix mask of valid clips.
      mask_y: Optional [..., m] bool prefix mask of valid captions.
      local_smoothing: Apply eq. 5.
      weak_alignment: Insert dummies (§4.2).
      smoothing_origin: "paper" or "release"; see `local_neighborhood_smoothing`.

    Returns:
      [...] S2DTW values.
    """
    if normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    return s2dtw_from_distances(
        pairwise_distance(x, y, distance),
        gamma=gamma,
        smoothing_gamma=smoothing_gamma,
        phi=phi,
        mask_x=mask_x,
        mask_y=mask_y,
        local_smoothing=local_smoothing,
        weak_alignment=weak_alignment,
        smoothing_origin=smoothing_origin,
    )
