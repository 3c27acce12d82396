"""VT-TWINS (Ko et al., CVPR 2022): S2DTW-aligned contrastive learning.

Each sample is n consecutive (clip, caption) pairs of one video
(`data.sampler="sequence"`): video [B, n, T, H, W, 3], text [B, n, L],
text_mask [B, n]. Both towers (shared with MIL-NCE) embed every clip and
caption; the sequences are temporally shuffled (§4.3, eq. 12, strategy
`loss.shuffle`), and eq. 13 contrasts every video's clip sequence with every
video's caption sequence of the global batch through −S2DTW
(`vtlearn.losses.s2dtw_nce`). Table 6's switches: `loss.shuffle` (TA: off, A,
B, C), `loss.weak_alignment` (WA), `loss.local_smoothing` (LS).

Padded pairs of short videos are masked out of shuffling and alignment; their
(all-zero) clips still pass through the backbone and its batch statistics.
"""

from __future__ import annotations

from vtlearn.alignment import shuffle
from vtlearn.losses.s2dtw_nce import s2dtw_nce_loss
from vtlearn.methods.video_text import VideoTextMethod


class VtTwins(VideoTextMethod):
    """The VT-TWINS method; see the module docstring."""

    def embed_sequences(self, params, state, batch, train: bool):
        """Clip and caption embeddings [B, n, D] (and the new model state)."""
        out, state = self.apply_video(params, state, batch, train=train)
        return out["video_embedding"], self.apply_text(params, batch["text"]), state

    def loss(self, params, state, batch, rng, step):
        lc = self.config.loss
        clips, captions, state = self.embed_sequences(params, state, batch, train=True)
        mask = batch["text_mask"]
        if lc.shuffle != "off":
            clips, captions = shuffle.temporal_shuffle(
                rng, clips, captions, video_mask=mask, text_mask=mask, window=lc.shuffle_window,
                strategy=lc.shuffle, temperature=lc.shuffle_temperature)
        value = s2dtw_nce_loss(
            clips, captions, video_mask=mask, text_mask=mask, direction=lc.direction,
            gamma=lc.gamma, smoothing_gamma=lc.smoothing_gamma or None, phi=lc.phi,
            distance=lc.distance, local_smoothing=lc.local_smoothing,
            weak_alignment=lc.weak_alignment, smoothing_origin=lc.smoothing_origin)
        return value, (state, {})
