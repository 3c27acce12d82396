"""MIL-NCE's sampler: one anchor clip with its K nearest captions (§3.2).

A random usable caption anchors the sample; a caption shorter than
`min_caption_seconds` (5 s) is widened symmetrically to it; a clip of
`num_frames` frames at `fps` is taken at a random time inside the (widened)
caption; the `num_candidates` captions nearest in time to the anchor
(itself first) are its positive candidates (K = 1 is plain NCE).

Sample: video [T, H, W, 3] (and/or audio [A], features_* [D]), text [K, L],
text_mask [K].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vtlearn.data import clips
from vtlearn.data import schema as S
from vtlearn.data.samplers import base


class Sampler(base.Sampler):
    """See the module docstring."""

    clips_per_sample = 1

    def output_spec(self) -> base.Spec:
        cfg = self.cfg
        return clips.modality_spec(cfg) | {
            "text": ((cfg.num_candidates, cfg.max_words), np.dtype(np.int32)),
            "text_mask": ((cfg.num_candidates,), np.dtype(bool))}

    def sample(self, ex, text_ids, usable, seed):
        cfg = self.cfg
        lo, hi = clips.caption_windows(ex, cfg.min_caption_seconds)
        anchors = tf.where(usable)[:, 0]
        pick = tf.random.stateless_uniform([], seed, 0, tf.shape(anchors)[0], tf.int32)
        a = tf.cast(anchors[pick], tf.int32)
        center = (ex[S.CAPTION_START] + ex[S.CAPTION_END]) / 2
        has_words = tf.reduce_any(text_ids != 0, axis=-1)
        dist = tf.abs(center - center[a])
        dist = tf.where(has_words, dist, np.inf)
        dist = tf.tensor_scatter_nd_update(dist, [[a]], [-1.0])  # anchor first
        k = cfg.num_candidates
        n = tf.shape(dist)[0]
        padded = tf.concat([-dist, tf.fill([k], -np.inf)], 0)
        _, cand = tf.math.top_k(padded, k=k)  # stable: ties keep time order
        mask = (cand < n) & tf.gather(tf.math.is_finite(padded), cand)
        cand = tf.where(mask, cand, 0)
        text = tf.where(mask[:, None], tf.gather(text_ids, cand), 0)
        clip_start = clips.random_clip_starts(lo[a][None], hi[a][None],
                                              clips.clip_seconds(cfg), seed + 2)
        out = clips.modalities(ex, lo[a][None], hi[a][None], clip_start, seed + 3, cfg, True)
        out = {key: v[0] for key, v in out.items()}
        out.update(text=text, text_mask=mask)
        return out
