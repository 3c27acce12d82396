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

`positives` generalises the diagonal to a bag of positives per row and
column, MIL-NCE's multiple-instance form (Miech et al. 2020, eq. 1; MCN's
"MIL-NCE*" row): each row's (column's) term becomes
log Σ_{j∈P(i)} e^{s_ij-δ} / (Σ_{j∈P(i)} e^{s_ij-δ} + Σ_{j∉P(i)} e^{s_ij}).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

_MASKED = -1e30  # finite: a fully masked row must not produce inf - inf


def masked_margin_softmax(x: jax.Array, y: jax.Array, margin: float,
                          mask: jax.Array | None = None,
                          positives: jax.Array | None = None) -> jax.Array:
    """L_xy of eq. 3: scalar, both directions summed, averaged over valid pairs.

    Args:
      x, y: [B, D] embeddings; row i of each is the pair's positive.
      margin: δ, subtracted from the positive logits.
      mask: bool [B], valid pairs (None: all).
      positives: bool [B, B], the positives of row i / column j (None: the
        diagonal; it must hold the diagonal).
    """
    b = x.shape[0]
    mask = jnp.ones([b], bool) if mask is None else mask
    positives = jnp.eye(b, dtype=bool) if positives is None else positives
    valid = mask[:, None] & mask[None, :]
    scores = jnp.where(positives, x @ y.T - margin, x @ y.T)
    scores = jnp.where(valid, scores, _MASKED)
    bag = jnp.where(positives & valid, scores, _MASKED)
    per_pair = (jax.nn.logsumexp(bag, axis=1) - jax.nn.logsumexp(scores, axis=1)
                + jax.nn.logsumexp(bag, axis=0) - jax.nn.logsumexp(scores, axis=0))
    return -jnp.sum(jnp.where(mask, per_pair, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def multimodal_mms(embeddings: Mapping[str, jax.Array], pairs: Sequence[tuple[str, str]],
                   margin: float, mask: jax.Array | None = None,
                   positives: jax.Array | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 2: Σ over modality pairs of `masked_margin_softmax`.

    Args:
      embeddings: modality name -> [B, D].
      pairs: the modality pairs, e.g. (("text", "audio"), ("video", "text"),
        ("audio", "video")).
      margin: δ.
      mask: bool [B] valid clips.
      positives: bool [B, B] bags of positives (None: the diagonal).

    Returns:
      (the sum, {"<x>_<y>": each pair's loss}).
    """
    terms = {f"{a}_{b}": masked_margin_softmax(embeddings[a], embeddings[b], margin, mask,
                                               positives)
             for a, b in pairs}
    return sum(terms.values()), terms
