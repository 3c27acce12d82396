"""The VT-TWINS contrastive loss over S2DTW distances (Ko et al., CVPR 2022, eq. 13).

For videos i = 1…B of the (global) batch with clip sequences X^(i) and caption
sequences Y^(i), let S_{ij} = S2DTW(X^(i), Y^(j)) (a [B, B] matrix computed as
one batched call over the B·B pairs). Eq. 13 is InfoNCE with logits −S:

    L_{v→t} = −(1/B) Σ_i log( e^{−S_ii} / (e^{−S_ii} + Σ_{j≠i} e^{−S_ij}) ),

i.e. video i is contrasted with the captions of the other videos N_i. The
paper writes "−log Σ_i (…)"; we read it, like the authors' release (which
averages), as the usual sum (here mean) of per-video log-likelihoods.

Directions: "video_to_text" is eq. 13 as printed; "text_to_video" contrasts
each caption sequence with the other videos' clips, which is the only form the
authors' release computes; "both" (the default) averages the two, as the usual
symmetric InfoNCE. The paper has no temperature (τ = 1, the default); `temperature`
divides the logits if set.

Table 6 ablations: `local_smoothing=False` (row 5) and additionally
`weak_alignment=False` (rows 1–4: plain soft-DTW) switch off parts of S2DTW.
Temporal shuffling (§4.3) is applied by the caller beforehand
(`vtlearn.alignment.temporal_shuffle`).

No collectives: the trainer passes gathered (global) arrays; under `jax.jit`
with sharded inputs XLA inserts the gathers.
"""

from typing import Literal

import jax
import jax.numpy as jnp

from vtlearn.alignment.s2dtw import DEFAULT_GAMMA
from vtlearn.alignment.s2dtw import DEFAULT_PHI
from vtlearn.alignment.s2dtw import SmoothingOrigin
from vtlearn.alignment.s2dtw import s2dtw_from_distances
from vtlearn.alignment.soft_dtw import Distance
from vtlearn.alignment.soft_dtw import l2_normalize
from vtlearn.alignment.soft_dtw import pairwise_distance

Direction = Literal["both", "video_to_text", "text_to_video"]


def s2dtw_matrix(
    video: jax.Array,
    text: jax.Array,
    *,
    video_mask: jax.Array | None = None,
    text_mask: jax.Array | None = None,
    gamma: float = DEFAULT_GAMMA,
    smoothing_gamma: float | None = None,
    phi: float = DEFAULT_PHI,
    distance: Distance = "neg_dot",
    normalize: bool = True,
    local_smoothing: bool = True,
    weak_alignment: bool = True,
    smoothing_origin: SmoothingOrigin = "paper",
) -> jax.Array:
    """S_{ij} = S2DTW(X^(i), Y^(j)) for every video i and caption sequence j.

    Args:
      video: [B, n, d] clip embeddings.
      text: [C, m, d] caption embeddings.
      video_mask: Optional [B, n] bool prefix mask of valid clips.
      text_mask: Optional [C, m] bool prefix mask of valid captions.
      gamma: γ of the S2DTW recursion (eq. 6).
      smoothing_gamma: γ of the smoothing (eq. 5); defaults to `gamma`.
      phi: Dummy distance.
      distance: Element distance; see `vtlearn.alignment.pairwise_distance`.
      normalize: L2-normalise embeddings first.
      local_smoothing: Apply eq. 5.
      weak_alignment: Insert dummies (§4.2).
      smoothing_origin: "paper" or "release" boundary at (0, 0) of eq. 5.

    Returns:
      [B, C] S2DTW values (float32).
    """
    if normalize:
        video, text = l2_normalize(video), l2_normalize(text)
    delta = pairwise_distance(
        video, text, distance, all_pairs=True, batch_last=True
    )  # [n, m, B, C]
    return s2dtw_from_distances(
        delta,
        batch_last=True,
        gamma=gamma,
        smoothing_gamma=smoothing_gamma,
        phi=phi,
        mask_x=None if video_mask is None else video_mask[:, None, :],
        mask_y=None if text_mask is None else text_mask[None, :, :],
        local_smoothing=local_smoothing,
        weak_alignment=weak_alignment,
        smoothing_origin=smoothing_origin,
    )


def s2dtw_nce_loss(
    video: jax.Array,
    text: jax.Array,
    *,
    direction: Direction = "both",
    temperature: float = 1.0,
    **alignment,
) -> jax.Array:
    """VT-TWINS loss, eq. 13: InfoNCE over −S2DTW between all videos of the batch.

    Args:
      video: [B, n, d] clip embeddings of the global batch (video i's clips).
      text: [B, m, d] caption embeddings (video i's captions).
      direction: "both" (default), "video_to_text" (eq. 13) or "text_to_video"
        (the release).
      temperature: Logits are −S2DTW / temperature (paper: 1).
      **alignment: the keyword arguments of `s2dtw_matrix` (masks, γ, φ,
        distance, normalisation, Table 6's "LS"/"WA" switches, smoothing
        origin); the release uses γ = 0.1, φ = 0.5, "neg_dot", normalised.

    Returns:
      Scalar float32 loss.
    """
    if direction not in Direction.__args__:
        raise ValueError(f"Unknown direction {direction!r}; expected one of "
                         f"{Direction.__args__}.")
    logits = -s2dtw_matrix(video, text, **alignment) / temperature
    positives = jnp.diagonal(logits)
    video_to_text = jnp.mean(jax.nn.logsumexp(logits, axis=1) - positives)
    text_to_video = jnp.mean(jax.nn.logsumexp(logits, axis=0) - positives)
    if direction == "video_to_text":
        return video_to_text
    if direction == "text_to_video":
        return text_to_video
    return 0.5 * (video_to_text + text_to_video)
