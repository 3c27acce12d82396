"""Hessel et al.'s sampler: fixed-length segments with the ASR spoken during them (§3, fn. 3).

`candidate_segments` segments of `segment_seconds` start uniformly at random
inside the record's chunk (they may overlap); those with no caption
overlapping them are dropped, and `num_pairs` of the rest are kept at random
(fewer are padded and masked). A segment's text is the words of every caption
overlapping it, in time order (`clips.overlapping_text`); its features are
the chunk's feature steps inside it, pooled by `data.feature_pooling`
(the paper: each step L2-normalised, then max-pooled, "l2_max").

The paper draws 256 candidates per *video*; records hold chunks
(`data/schema.py`), so here the candidates are per chunk, which with 32-s
chunks and 5-s segments covers a chunk many times over. All segments of a
sample come from one video, so a batch of B samples holds B videos × m
segments and every positive has same-video negatives.

Sample: features_2d [m, D2], features_3d [m, D3], text [m, L], text_mask [m].
"""

from __future__ import annotations

import tensorflow as tf

from vtlearn.data import clips
from vtlearn.data import schema as S
from vtlearn.data.samplers import base


class Sampler(base.PairsSampler):
    """See the module docstring."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.video or cfg.audio_seconds > 0 or not (cfg.features_2d or cfg.features_3d):
            raise ValueError("data.sampler='segments' reads per-second features only: set "
                             "data.video=False, data.audio_seconds=0 and data.features_2d "
                             "and/or data.features_3d > 0")
        if not (cfg.segment_seconds > 0 and cfg.candidate_segments >= cfg.num_pairs >= 1):
            raise ValueError(
                f"data.segment_seconds must be > 0 and data.candidate_segments >= "
                f"data.num_pairs >= 1, got {cfg.segment_seconds}, {cfg.candidate_segments}, "
                f"{cfg.num_pairs}")

    def sample(self, ex, text_ids, usable, seed):
        cfg = self.cfg
        m, length = cfg.num_pairs, cfg.segment_seconds
        chunk_start, chunk_end = ex[S.CHUNK_START], ex[S.CHUNK_END]
        room = tf.maximum(chunk_end - chunk_start - length, 0.0)
        lo = chunk_start + tf.random.stateless_uniform([cfg.candidate_segments], seed) * room
        hi = tf.minimum(lo + length, chunk_end)
        text = clips.overlapping_text(text_ids, ex[S.CAPTION_START], ex[S.CAPTION_END], lo, hi,
                                      cfg.max_words)
        has_text = tf.reduce_any(text != 0, axis=-1)
        # A random subset of the segments with text: the m largest random keys among them.
        keys = tf.where(has_text, tf.random.stateless_uniform([cfg.candidate_segments],
                                                              seed + 1), -1.0)
        top, pick = tf.math.top_k(keys, k=m)
        mask = top >= 0.0
        out = clips.modalities(ex, tf.gather(lo, pick), tf.gather(hi, pick), tf.gather(lo, pick),
                               seed + 2, cfg, True)
        out = {k: tf.where(mask[:, None], v, 0.0) for k, v in out.items()}
        out.update(text=tf.where(mask[:, None], tf.gather(text, pick), 0), text_mask=mask)
        return out
