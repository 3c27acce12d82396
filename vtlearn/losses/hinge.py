"""Hessel et al. 2020's bidirectional hinge loss with same- and other-video negatives.

Eq. 1 of the paper, for a positive pair i (segment v_i with its ASR t_i) and
a negative j, similarity s_ij = cos(f(v_i), g(t_j)):

    ℓ_ij = max(0, δ + s_ij − s_ii) + max(0, δ + s_ji − s_ii)

"For each positive case, a set of mismatched negative cases is also sampled
both from other videos and from the same video in equal proportion." Our
reading, in expectation rather than by sampling (as HowTo100M's max-margin
loss weights its negatives): with O_i the valid pairs of other videos and
W_i the other valid pairs of i's own video,

    L_i = ½ mean_{j ∈ O_i} ℓ_ij + ½ mean_{j ∈ W_i} ℓ_ij

(a mean alone when the other set is empty), and the loss is the mean of L_i
over valid positives that have any negative. Every negative of the batch is
used, so the gradient has no sampling noise; `same_video_weight` sets the
proportion (½ in the paper).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mixed_negative_hinge_loss(similarity: jax.Array, video: jax.Array, valid: jax.Array,
                              margin: float = 0.1,
                              same_video_weight: float = 0.5) -> jax.Array:
    """The loss of the module docstring.

    Args:
      similarity: [N, N], s_ij between segment i and text j.
      video: int [N] video of each pair.
      valid: bool [N] real (not padded) pairs.
      margin: δ.
      same_video_weight: weight of the same-video mean (the rest goes to
        other videos' negatives).

    Returns:
      Scalar loss (0 if no valid positive has a negative).
    """
    n = similarity.shape[0]
    diagonal = jnp.diagonal(similarity)
    pair_loss = (jax.nn.relu(margin + similarity - diagonal[:, None])
                 + jax.nn.relu(margin + similarity.T - diagonal[:, None]))
    both = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
    same = both & (video[:, None] == video[None, :])
    other = both & (video[:, None] != video[None, :])

    def mean_over(mask):
        count = mask.sum(1)
        return jnp.where(mask, pair_loss, 0.0).sum(1) / jnp.maximum(count, 1), count > 0

    same_mean, has_same = mean_over(same)
    other_mean, has_other = mean_over(other)
    w_same = jnp.where(has_same, jnp.where(has_other, same_video_weight, 1.0), 0.0)
    per_positive = w_same * same_mean + jnp.where(has_other, 1.0 - w_same, 0.0) * other_mean
    counted = valid & (has_same | has_other)
    return jnp.where(counted, per_positive, 0.0).sum() / jnp.maximum(counted.sum(), 1)
