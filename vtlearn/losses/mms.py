"""Masked margin softmax (MMS; Ilharco et al. 2019), as MCN uses it (Chen et al. 2021, eq. 2-3).

For paired embeddings x_i, y_i (e.g. text and audio of clip i) and raw dot
products s_ij = x_i·y_j, each positive logit s_ii has the margin δ
subtracted and is contrasted in both directions with the batch's imposters:

    L_xy = -1/B Σ_i [ log e^{s_ii-δ} / (e^{s_ii-δ} + Σ_{k≠i} e^{s_ki})
                    + log e^{s_ii-δ} / (e^{s_ii-δ} + Σ_{j≠i} e^{s_ij}) ]

and MCN's contrastive term is the sum over the modality pairs (eq. 2,
`multimodal_mms`). With δ = 0 this is the symmetric InfoNCE loss ("NCE" in
MCN's Table 5). Pairs whose `mask` is False (padding, samples a record could
not fill) take no part, as positive or imposter; B counts the valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

_MASKED = -1e30  # finite: a fully masked row must not produce inf - inf


def masked_margin_softmax(x: jax.Array, y: jax.Array, margin: float,
                          mask: jax.Array | None = None) -> jax.Array:
    """L_xy of eq. 3: scalar, both directions summed, averaged over valid pairs.

    Args:
      x, y: [B, D] embeddings; row i of each is the pair's positive.
      margin: δ, subtracted from the positive logits.
      mask: bool [B], valid pairs (None: all).
    """
    b = x.shape[0]
    mask = jnp.ones([b], bool) if mask is None else mask
    scores = x @ y.T
    eye = jnp.eye(b, dtype=bool)
    scores = jnp.where(eye, scores - margin, scores)
    scores = jnp.where(mask[:, None] & mask[None, :], scores, _MASKED)
    positive = jnp.diagonal(scores)
    per_pair = (2 * positive - jax.nn.logsumexp(scores, axis=1)
                - jax.nn.logsumexp(scores, axis=0))
    return -jnp.sum(jnp.where(mask, per_pair, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def multimodal_mms(embeddings: Mapping[str, jax.Array], pairs: Sequence[tuple[str, str]],
                   margin: float, mask: jax.Array | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 2: Σ over modality pairs of `masked_margin_softmax`.

    Args:
      embeddings: modality name -> [B, D].
      pairs: the modality pairs, e.g. (("text", "audio"), ("video", "text"),
        ("audio", "video")).
      margin: δ.
      mask: bool [B] valid clips.

    Returns:
      (the sum, {"<x>_<y>": each pair's loss}).
    """
    terms = {f"{a}_{b}": masked_margin_softmax(embeddings[a], embeddings[b], margin, mask)
             for a, b in pairs}
    return sum(terms.values()), terms
