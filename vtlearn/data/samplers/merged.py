"""MCN's sampler: n captions drawn with replacement, each merged with its neighbours
until it lasts `min_caption_seconds` (Chen et al. 2021, §4.1; the release's
`youtube_dataloader.py`, `min_time` = 10 s, 32 clips per video).

Each of `num_pairs` anchors is a usable caption drawn uniformly with
replacement. A clip starts as its anchor's span; while it is shorter than
`min_caption_seconds` and the chunk has a caption before or after it, it
takes in the neighbour whose inclusion gives the shorter span (the earlier
one on ties), as the release does. The clip's text is the words of the
captions overlapping its span, in time order, cut to `max_words` (the
release appends each merged neighbour's words at the end instead; with a
max-pooled bag of words only the cut can differ). Features are pooled over
the span by `data.feature_pooling` (MCN: max, then L2-normalise, "max_l2");
audio is the span's log-mel frames from its start, cut or zero-padded to
`audio_seconds` (1,000 frames = 10 s), with the count of real frames in
`audio_frames`.

The release draws 32 clips per video; records hold chunks
(`data/schema.py`), so here the n clips of a sample come from one chunk: a
batch of B samples is B chunks × n clips.

Sample: features_2d [n, D2], features_3d [n, D3] (and/or video [n, T, H, W, 3]),
audio [n, F, M] and audio_frames [n] (or audio [n, A]), text [n, L],
text_mask [n] (all True: a record that reaches the sampler has a usable caption),
span [n, 2] (each clip's start and end, seconds: MIL-NCE's bags of positives
are the clips of a sample whose spans overlap).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vtlearn.data import clips
from vtlearn.data import schema as S
from vtlearn.data.samplers import base


def merge_neighbours(start: tf.Tensor, end: tf.Tensor, anchors: tf.Tensor,
                     min_seconds: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Caption index ranges [first, last] (each int32 [n]) of the merged clips.

    Args:
      start, end: [N] caption times, in time order.
      anchors: int32 [n] anchor captions.
      min_seconds: the shortest clip wanted.
    """
    num = tf.shape(start)[0]

    def grow(first, last):
        span = tf.gather(end, last) - tf.gather(start, first)
        short = span < min_seconds
        can_prev, can_next = first > 0, last < num - 1
        prev_span = tf.gather(end, last) - tf.gather(start, tf.maximum(first - 1, 0))
        next_span = tf.gather(end, tf.minimum(last + 1, num - 1)) - tf.gather(start, first)
        take_prev = short & can_prev & (~can_next | (prev_span <= next_span))
        take_next = short & can_next & ~take_prev
        return first - tf.cast(take_prev, tf.int32), last + tf.cast(take_next, tf.int32)

    def growing(first, last):
        span = tf.gather(end, last) - tf.gather(start, first)
        return tf.reduce_any((span < min_seconds) & ((first > 0) | (last < num - 1)))

    return tf.while_loop(growing, grow, (anchors, anchors), maximum_iterations=num)


class Sampler(base.PairsSampler):
    """See the module docstring."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.num_pairs < 1:
            raise ValueError(f"data.num_pairs must be >= 1, got {cfg.num_pairs}")

    def output_spec(self) -> base.Spec:
        return super().output_spec() | {"span": ((self.cfg.num_pairs, 2), np.dtype(np.float32))}

    def sample(self, ex, text_ids, usable, seed):
        cfg = self.cfg
        n = cfg.num_pairs
        start, end = ex[S.CAPTION_START], ex[S.CAPTION_END]
        candidates = tf.cast(tf.where(usable)[:, 0], tf.int32)
        pick = tf.random.stateless_uniform([n], seed, 0, tf.shape(candidates)[0], tf.int32)
        first, last = merge_neighbours(start, end, tf.gather(candidates, pick),
                                       cfg.min_caption_seconds)
        lo = tf.maximum(tf.gather(start, first), ex[S.CHUNK_START])
        hi = tf.minimum(tf.gather(end, last), ex[S.CHUNK_END])
        text = clips.overlapping_text(text_ids, start, end, lo, hi, cfg.max_words)
        clip_start = clips.random_clip_starts(lo, hi, clips.clip_seconds(cfg), seed + 1)
        out = clips.modalities(ex, lo, hi, clip_start, seed + 2, cfg, True)
        out.update(text=text, text_mask=tf.ones([n], bool), span=tf.stack([lo, hi], -1))
        return out
