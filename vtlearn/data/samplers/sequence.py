"""VT-TWINS's sampler: n consecutive clip-caption pairs of one video (§4).

`num_pairs` consecutive usable captions, each with its own clip taken as in
the "clip" sampler; records with fewer usable captions are padded with zeros
and masked.

Sample: video [n, T, H, W, 3] (and/or audio [n, A], features_* [n, D]),
text [n, L], text_mask [n], and the ground truth the alignment view draws:
caption_step [n] (the caption's step, an index into the record's segments,
-1 for chatter or records without steps) and clip_step [n] (the segment that
holds the clip's centre, -1 for none); these two stay on the host.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vtlearn.data import clips
from vtlearn.data import schema as S
from vtlearn.data.samplers import base


class Sampler(base.PairsSampler):
    """See the module docstring."""

    host_keys = ("caption_step", "clip_step")

    def output_spec(self) -> base.Spec:
        n = self.cfg.num_pairs
        return super().output_spec() | {"caption_step": ((n,), np.dtype(np.int32)),
                                         "clip_step": ((n,), np.dtype(np.int32))}

    def sample(self, ex, text_ids, usable, seed):
        cfg = self.cfg
        n = cfg.num_pairs
        lo, hi = clips.caption_windows(ex, cfg.min_caption_seconds)
        idx = tf.cast(tf.where(usable)[:, 0], tf.int32)
        m = tf.shape(idx)[0]
        first = tf.random.stateless_uniform([], seed, 0, tf.maximum(m - n, 0) + 1, tf.int32)
        pos = first + tf.range(n)
        mask = pos < m
        sel = tf.gather(idx, tf.minimum(pos, m - 1))
        clip_start = clips.random_clip_starts(tf.gather(lo, sel), tf.gather(hi, sel),
                                              clips.clip_seconds(cfg), seed + 2)
        out = clips.modalities(ex, tf.gather(lo, sel), tf.gather(hi, sel), clip_start,
                               seed + 3, cfg, True)
        out = {k: tf.where(tf.reshape(mask, [n] + [1] * (len(v.shape) - 1)), v,
                           tf.zeros_like(v))
               for k, v in out.items()}
        out.update(text=tf.where(mask[:, None], tf.gather(text_ids, sel), 0),
                   text_mask=mask)
        steps = clips.caption_steps(ex)
        centre = clip_start + clips.clip_seconds(cfg) / 2
        if not cfg.video:
            centre = (tf.gather(lo, sel) + tf.gather(hi, sel)) / 2
        inside = ((centre[:, None] >= ex[S.SEGMENT_START][None])
                  & (centre[:, None] < ex[S.SEGMENT_END][None]))  # [n, segments], maybe 0
        ids = tf.range(tf.shape(inside)[1], dtype=tf.int32)[None]
        segment = tf.maximum(tf.reduce_max(tf.where(inside, ids, -1), axis=1), -1)
        out.update(caption_step=tf.where(mask, tf.gather(steps, sel), -1),
                   clip_step=tf.where(mask, segment, -1))
        return out
