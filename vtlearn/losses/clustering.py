"""Online clustering and cluster-prediction losses (MCN, Chen et al. 2021, §3.2, eq. 5-7,
and its Table 6 ablation; SeLa, Asano et al. 2020, for the Sinkhorn labels).

All functions are pure and jit-able; none loops on the host. Under `jax.jit`
with `points` sharded over a mesh, the partitioner splits the distances and
segment sums over the devices and reduces the centroid sums across them
(MCN's refit, `vtlearn.methods.mcn`).

Two distances (`metric`):
  * "euclidean" (the paper's eq. 5): assign to argmin ‖x − µ‖², update each
    centroid to the mean of its points.
  * "cosine" (the MCN release): assign to argmax cos(x, µ), update each
    centroid to the un-normalised mean of its points.
An empty cluster (`empty_clusters`) takes the point farthest from its
centroid, as scikit-learn's Lloyd does ("farthest"; the paper is silent),
keeps its centroid ("keep") or becomes 0 ("zero", the release's, which
cos(x, 0) = 0 still lets points join). Warm-started refits of embeddings
that drift keep clusters empty for good under "keep": on the lab, 61 of 64
after 300 steps.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from vtlearn.alignment import l2_normalize

Metric = Literal["euclidean", "cosine"]
METRICS = ("euclidean", "cosine")
EmptyClusters = Literal["farthest", "keep", "zero"]
EMPTY_CLUSTERS = ("farthest", "keep", "zero")


class KMeansResult(NamedTuple):
    centroids: jax.Array  # [K, D]
    assignment: jax.Array  # int32 [N], w.r.t. the returned centroids
    inertia: jax.Array  # Σ over valid points of ‖x − µ_assigned‖² (both metrics)
    empty: jax.Array  # int32: clusters with no valid point at the last update


def pairwise_scores(points: jax.Array, centroids: jax.Array, metric: Metric) -> jax.Array:
    """[N, K] scores, higher is nearer: −‖x − µ‖² or cos(x, µ)."""
    if metric == "euclidean":
        return (2 * points @ centroids.T - jnp.sum(points ** 2, -1, keepdims=True)
                - jnp.sum(centroids ** 2, -1)[None])
    if metric == "cosine":
        return l2_normalize(points) @ l2_normalize(centroids).T
    raise ValueError(f"clustering metric must be one of {METRICS}, got {metric!r}")


def assign(points: jax.Array, centroids: jax.Array, metric: Metric) -> jax.Array:
    """int32 [N]: each point's nearest centroid (first on ties)."""
    return jnp.argmax(pairwise_scores(points, centroids, metric), axis=-1).astype(jnp.int32)


def lloyd_step(points: jax.Array, valid: jax.Array, centroids: jax.Array, metric: Metric,
               empty_clusters: EmptyClusters = "farthest") -> tuple[jax.Array, jax.Array]:
    """One k-means iteration: assign, then update. Returns (centroids, #empty).

    `empty_clusters` says what a cluster that received no valid point
    becomes: "farthest" takes the valid point farthest from its own
    centroid (the farthest one for the first empty cluster, the next for
    the second, ...; the point leaves its cluster), as scikit-learn's Lloyd
    does; "keep" keeps its centroid; "zero" makes it 0 (the MCN release's
    cosine k-means). `#empty` counts the clusters that were empty before
    any relocation.
    """
    labels = assign(points, centroids, metric)
    k = centroids.shape[0]
    weights = valid.astype(points.dtype)
    # Segment sums cost N·D (a one-hot matmul costs 2·N·K·D, as much as the distances).
    counts = jax.ops.segment_sum(weights, labels, k)  # [K]
    empty = counts == 0
    if empty_clusters == "farthest":
        distance = jnp.sum((points - centroids[labels]) ** 2, -1)
        _, farthest = jax.lax.top_k(jnp.where(valid, distance, -jnp.inf), min(k, len(points)))
        rank = jnp.cumsum(empty) - 1  # the j-th empty cluster takes the j-th farthest point
        usable = empty & (rank < jnp.sum(valid))
        moved = farthest[jnp.clip(rank, 0, farthest.shape[0] - 1)]
        labels = labels.at[jnp.where(usable, moved, len(points))].set(
            jnp.arange(k, dtype=labels.dtype), mode="drop")
        counts = jax.ops.segment_sum(weights, labels, k)
    elif empty_clusters not in ("keep", "zero"):
        raise ValueError(f"empty_clusters must be one of {EMPTY_CLUSTERS}, got "
                         f"{empty_clusters!r}")
    sums = jax.ops.segment_sum(points * weights[:, None], labels, k)  # [K, D]
    mean = sums / jnp.maximum(counts, 1.0)[:, None]
    fallback = jnp.zeros_like(centroids) if empty_clusters == "zero" else centroids
    new = jnp.where((counts > 0)[:, None], mean, fallback)
    return new, jnp.sum(empty).astype(jnp.int32)


def kmeans(points: jax.Array, valid: jax.Array, centroids: jax.Array, iterations: int,
           metric: Metric = "euclidean", tolerance: float = 0.0,
           empty_clusters: EmptyClusters = "farthest") -> KMeansResult:
    """Lloyd steps from `centroids` (a warm start), then the final assignment.

    Stops after `iterations` steps, or earlier once a step moves the centroids
    by at most `tolerance` in total squared distance (0: only when they stop
    moving, i.e. the assignment is stable: scikit-learn's `tol=0`).

    Args:
      points: [N, D]; rows with `valid` False take no part.
      valid: bool [N].
      centroids: [K, D] initial centroids.
      iterations: the most Lloyd steps (>= 1).
      metric: "euclidean" or "cosine".
      tolerance: total squared centroid shift that counts as converged.
      empty_clusters: "farthest", "keep" or "zero" (`lloyd_step`).
    """
    if iterations < 1:
        raise ValueError(f"k-means needs at least 1 iteration, got {iterations}")

    def moving(carry):
        i, _, _, shift = carry
        return (i < iterations) & (shift > tolerance)

    def body(carry):
        i, old, _, _ = carry
        new, empty = lloyd_step(points, valid, old, metric, empty_clusters)
        return i + 1, new, empty, jnp.sum((new - old) ** 2)

    start = (jnp.zeros([], jnp.int32), centroids, jnp.zeros([], jnp.int32),
             jnp.full([], jnp.inf, centroids.dtype))
    _, centroids, empty, _ = jax.lax.while_loop(moving, body, start)
    labels = assign(points, centroids, metric)
    inertia = jnp.sum(jnp.where(valid, jnp.sum((points - centroids[labels]) ** 2, -1), 0.0))
    return KMeansResult(centroids, labels, inertia, empty)


def init_centroids(points: jax.Array, valid: jax.Array, num_clusters: int,
                   rng: jax.Array) -> jax.Array:
    """[K, D]: K distinct valid points at random; with fewer than K valid points,
    every valid point once and the rest drawn again from them (duplicates then
    leave clusters empty, which `lloyd_step` handles)."""
    keys = jnp.where(valid, jax.random.gumbel(rng, valid.shape), -jnp.inf)
    order = jnp.argsort(-keys)  # valid points first, in random order
    num_valid = jnp.maximum(jnp.sum(valid), 1)
    picks = order[jnp.arange(num_clusters) % num_valid]
    return points[picks]


def centroid_contrastive(embedding: jax.Array, centroids: jax.Array, target: jax.Array,
                         margin: float, mask: jax.Array) -> jax.Array:
    """Eq. 6: −1/B Σ_i log e^{x_i·µ'_i − δ} / Σ_k e^{x_i·µ_k}, µ'_i = centroids[target_i].

    The denominator is eq. 6's: every centroid, the target's logit without
    the margin. Centroids are constants here (the caller stops gradients).

    Args:
      embedding: [B, D] one modality's embeddings.
      centroids: [K, D].
      target: int32 [B] nearest centroid of each clip's fused embedding.
      margin: δ.
      mask: bool [B] valid clips.
    """
    logits = embedding @ centroids.T
    positive = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0] - margin
    per_clip = positive - jax.nn.logsumexp(logits, axis=-1)
    return -jnp.sum(jnp.where(mask, per_clip, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def cross_entropy(logits: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over valid rows of −Σ_k q_k log softmax(logits)_k.

    Args:
      logits: [B, K].
      target: [B, K] distributions (soft labels) or int32 [B] (hard labels).
      mask: bool [B].
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if target.ndim == 1:
        per_row = -jnp.take_along_axis(log_p, target[:, None], axis=1)[:, 0]
    else:
        per_row = -jnp.sum(target * log_p, axis=-1)
    return jnp.sum(jnp.where(mask, per_row, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def sinkhorn_knopp(logits: jax.Array, mask: jax.Array, epsilon: float = 0.05,
                   iterations: int = 3) -> jax.Array:
    """Soft equipartitioned labels [B, K] (SeLa; the SwAV form with `epsilon`).

    Q ∝ exp(logits / ε), then `iterations` alternations that give every
    cluster the same total mass over the valid rows and every valid row a
    mass of 1; rows with `mask` False are zero.

    Args:
      logits: [B, K] cluster scores.
      mask: bool [B].
      epsilon: entropic regularisation ε (> 0).
      iterations: Sinkhorn-Knopp rounds.
    """
    z = logits / epsilon
    z = z - jnp.max(jnp.where(mask[:, None], z, -jnp.inf))  # one shift: exp in range
    q = jnp.where(mask[:, None], jnp.exp(z), 0.0)
    rows = jnp.maximum(jnp.sum(mask), 1).astype(q.dtype)
    k = q.shape[1]
    for _ in range(iterations):
        q = q / jnp.maximum(jnp.sum(q, axis=0, keepdims=True), 1e-30) / k
        q = q / jnp.maximum(jnp.sum(q, axis=1, keepdims=True), 1e-30) / rows
    return jax.lax.stop_gradient(q * rows)
