"""Cutting clips out of one parsed chunk record (tf.data graph code).

Shared by the training samplers (`vtlearn.data.samplers`) and the evaluation
units of `vtlearn.data.pipeline`: caption windows, clip times, frame
decoding and crops, audio windows and feature window means. `ex` is a record
parsed by `vtlearn.data.records.parse_example`; `cfg` the data config.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vtlearn.data import audio
from vtlearn.data import schema as S

EPS = 1e-4
FEATURE_POOLING = ("mean", "l2_max", "max_l2")
AUDIO_FEATURES = ("waveform", "log_mel")


def caption_windows(ex, min_seconds):
    """Widened caption windows clipped to the chunk: (lo, hi) [N] each."""
    start, end = ex[S.CAPTION_START], ex[S.CAPTION_END]
    pad = tf.maximum(0.0, (min_seconds - (end - start)) / 2)
    lo = tf.maximum(start - pad, ex[S.CHUNK_START])
    hi = tf.minimum(end + pad, ex[S.CHUNK_END])
    return lo, hi


def caption_steps(ex):
    """int32 [N]: each caption's ground-truth step (an index into the record's
    segments), -1 for chatter and for records that carry no steps."""
    steps = tf.cast(ex[S.CAPTION_STEP], tf.int32)
    return tf.cond(tf.size(steps) > 0, lambda: steps,
                   lambda: -tf.ones(tf.shape(ex[S.CAPTION_START]), tf.int32))


def clip_seconds(cfg) -> float:
    return cfg.num_frames / cfg.fps if cfg.video else 0.0


def usable_captions(ex, text_ids, cfg):
    """[N] bool: captions with a word in vocabulary whose window holds a clip."""
    lo, hi = caption_windows(ex, cfg.min_caption_seconds)
    has_words = tf.reduce_any(text_ids != 0, axis=-1)
    span = clip_seconds(cfg) if cfg.video else 0.0
    fits = hi - lo >= span - EPS
    if cfg.video:
        fits &= tf.shape(ex[S.FRAMES])[0] > 0
    # A window must also hold at least one instant inside the chunk.
    fits &= hi > lo
    if cfg.audio_seconds > 0:  # a chunk without audio (or all silent) yields no sample
        fits &= tf.reduce_any(ex[S.WAVEFORM] != 0.0)
    return has_words & fits


def _frame_indices(ex, clip_start, cfg):
    """Stored-frame indices [..., T] for clips starting at `clip_start` [...]."""
    rate = ex[S.FRAME_RATE]
    times = clip_start[..., None] + tf.range(cfg.num_frames, dtype=tf.float32) / cfg.fps
    idx = tf.cast(tf.round((times - ex[S.CHUNK_START]) * rate), tf.int32)
    return tf.clip_by_value(idx, 0, tf.shape(ex[S.FRAMES])[0] - 1)


def _decode_frames(jpegs, crop_window, crop, out_size, flip):
    """Decodes JPEGs [M] inside `crop_window` [4] (side `crop`) -> uint8 [M, s, s, 3]."""
    frames = tf.map_fn(
        lambda b: tf.ensure_shape(tf.io.decode_and_crop_jpeg(b, crop_window, channels=3),
                                  [crop, crop, 3]),
        jpegs, fn_output_signature=tf.TensorSpec([crop, crop, 3], tf.uint8))
    if out_size:
        frames = tf.image.resize(frames, [out_size, out_size], antialias=True)
        frames = tf.cast(tf.clip_by_value(tf.round(frames), 0, 255), tf.uint8)
    return tf.cond(flip, lambda: tf.reverse(frames, [2]), lambda: frames)


def _crop_window(jpeg, crop, seed, random):
    """[y, x, h, w] of a square crop of side `crop` (random or centered)."""
    shape = tf.io.extract_jpeg_shape(jpeg)
    h, w = shape[0], shape[1]
    tf.debugging.assert_greater_equal(
        tf.minimum(h, w), crop,
        message=f"stored frames are smaller than the crop size {crop}")
    if random:
        u = tf.random.stateless_uniform([2], seed, 0.0, 1.0)
        y = tf.cast(u[0] * tf.cast(h - crop + 1, tf.float32), tf.int32)
        x = tf.cast(u[1] * tf.cast(w - crop + 1, tf.float32), tf.int32)
    else:
        y, x = (h - crop) // 2, (w - crop) // 2
    return tf.stack([y, x, crop, crop])


def _window_pool(feats, rate, chunk_start, lo, hi, pooling):
    """Feature steps overlapping [lo, hi) pooled -> [..., D]; zeros if none.

    `pooling` "mean" averages them; "l2_max" L2-normalises each step and takes
    the element-wise maximum (Hessel et al. 2020, following Miech et al. 2019);
    "max_l2" takes the element-wise maximum, then L2-normalises it (MCN,
    following HowTo100M's feature pooling).
    """
    n = tf.shape(feats)[0]
    t = chunk_start + tf.cast(tf.range(n), tf.float32) / tf.maximum(rate, EPS)
    t_end = t + 1.0 / tf.maximum(rate, EPS)
    inside = (t[None] < hi[:, None]) & (t_end[None] > lo[:, None])  # [W, n]
    if pooling == "mean":  # a select, not a matmul: 0 · NaN would spread one bad step
        total = tf.reduce_sum(tf.where(inside[..., None], feats[None], 0.0), axis=1)
        return tf.math.divide_no_nan(
            total, tf.reduce_sum(tf.cast(inside, tf.float32), -1, keepdims=True))
    if pooling in ("l2_max", "max_l2"):
        steps = tf.math.l2_normalize(feats, axis=-1) if pooling == "l2_max" else feats
        masked = tf.where(inside[..., None], steps[None], -np.inf)
        pooled = tf.where(tf.reduce_any(inside, -1, keepdims=True),
                          tf.reduce_max(masked, axis=1), 0.0)
        return tf.math.l2_normalize(pooled, axis=-1) if pooling == "max_l2" else pooled
    raise ValueError(f"data.feature_pooling must be one of {FEATURE_POOLING}, got {pooling!r}")


def overlapping_text(text_ids, start, end, lo, hi, max_words):
    """Token ids [W, max_words] of the captions overlapping each window [lo, hi).

    The captions' words in time order, padding dropped, truncated to
    `max_words` (Hessel et al.'s "ASR overlapping the segment").

    Args:
      text_ids: int32 [N, L] captions' ids; start, end: [N] their times.
      lo, hi: [W] windows.
    """
    overlap = (start[None] < hi[:, None]) & (end[None] > lo[:, None])  # [W, N]
    ids = tf.where(overlap[..., None], text_ids[None], 0)
    ids = tf.reshape(ids, [tf.shape(lo)[0], -1])  # [W, N*L] in time order
    order = tf.argsort(tf.cast(ids == 0, tf.int32), axis=-1, stable=True)
    ids = tf.gather(ids, order, batch_dims=1)
    ids = tf.pad(ids, [[0, 0], [0, max_words]])
    return ids[:, :max_words]


def _check_rate(ex, cfg):
    """Fails naming the video and chunk when a record's audio rate is not data.audio_rate."""
    rate = ex[S.SAMPLE_RATE]
    tf.debugging.Assert(tf.abs(rate - cfg.audio_rate) <= 1e-3 * cfg.audio_rate, [
        f"record audio rate differs from data.audio_rate={cfg.audio_rate} (convert with "
        "--waveform_rate or set data.audio_rate); video id, chunk start, record rate:",
        ex[S.VIDEO_ID], ex[S.CHUNK_START], rate])


def _audio_windows(ex, center, cfg):
    """Waveform windows [..., A] of audio_seconds centered at `center` [...]."""
    wav, rate = ex[S.WAVEFORM], ex[S.SAMPLE_RATE]
    length = int(round(cfg.audio_seconds * cfg.audio_rate))
    _check_rate(ex, cfg)
    first = tf.cast(tf.round((center - ex[S.CHUNK_START]) * rate), tf.int32) - length // 2
    idx = first[..., None] + tf.range(length)
    inside = (idx >= 0) & (idx < tf.shape(wav)[0])
    return tf.where(inside, tf.gather(wav, tf.clip_by_value(idx, 0, tf.shape(wav)[0] - 1)),
                    0.0)


def modalities(ex, lo, hi, clip_start, seed, cfg, train):
    """Per-anchor clips for windows [n]: video/audio/features with leading n."""
    out = {}
    span = clip_seconds(cfg)
    center = clip_start + span / 2 if cfg.video else (lo + hi) / 2
    if cfg.video:
        idx = _frame_indices(ex, clip_start, cfg)  # [n, T]
        crop = cfg.crop_size if train else cfg.eval_crop_size
        window = _crop_window(ex[S.FRAMES][0], crop, seed, random=train)
        flip = (tf.random.stateless_uniform([], seed + 1) < 0.5) if (
            train and cfg.flip) else tf.constant(False)
        frames = _decode_frames(tf.gather(ex[S.FRAMES], tf.reshape(idx, [-1])),
                                window, crop, cfg.image_size, flip)
        size = cfg.image_size or crop
        out["video"] = tf.reshape(frames, tf.concat(
            [tf.shape(idx), [size, size, 3]], 0))
    if cfg.audio_seconds > 0 and cfg.audio_features == "log_mel":
        _check_rate(ex, cfg)
        spectrogram = audio.log_mel(ex[S.WAVEFORM], cfg.audio_rate, cfg.num_mel_bands)
        alo, ahi = (clip_start, clip_start + span) if cfg.video else (lo, hi)
        frames, valid = audio.clip_frames(spectrogram, ex[S.CHUNK_START], tf.reshape(alo, [-1]),
                                          tf.reshape(ahi, [-1]), _audio_frames(cfg),
                                          cfg.audio_rate)
        out["audio"], out["audio_frames"] = frames, valid
    elif cfg.audio_seconds > 0:
        out["audio"] = _audio_windows(ex, center, cfg)
    for key, dim in (("features_2d", cfg.features_2d), ("features_3d", cfg.features_3d)):
        if dim:
            feats = ex[S.FEATURES_2D if key == "features_2d" else S.FEATURES_3D]
            flo, fhi = (clip_start, clip_start + span) if cfg.video else (lo, hi)
            out[key] = _window_pool(feats, ex[S.FEATURE_RATE], ex[S.CHUNK_START],
                                    tf.reshape(flo, [-1]), tf.reshape(fhi, [-1]),
                                    cfg.feature_pooling)
    return out


def _audio_frames(cfg) -> int:
    """Spectrogram frames per clip: audio_seconds at the 10-ms hop."""
    return int(round(cfg.audio_seconds / audio.HOP_SECONDS))


def random_clip_starts(lo, hi, span, seed):
    u = tf.random.stateless_uniform(tf.shape(lo), seed)
    return lo + u * tf.maximum(hi - lo - span, 0.0)


def modality_spec(cfg, lead: tuple[int, ...] = ()) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample (shape, dtype) of the training crops `modalities` returns.

    Args:
      cfg: data config.
      lead: leading axes of the sample, e.g. (n,) for n pairs per sample.
    """
    if cfg.audio_features not in AUDIO_FEATURES:
        raise ValueError(f"data.audio_features must be one of {AUDIO_FEATURES}, got "
                         f"{cfg.audio_features!r}")
    spec = {}
    if cfg.video:
        size = cfg.image_size or cfg.crop_size
        spec["video"] = (lead + (cfg.num_frames, size, size, 3), np.dtype(np.uint8))
    if cfg.audio_seconds > 0 and cfg.audio_features == "log_mel":
        spec["audio"] = (lead + (_audio_frames(cfg), cfg.num_mel_bands), np.dtype(np.float32))
        spec["audio_frames"] = (lead, np.dtype(np.int32))
    elif cfg.audio_seconds > 0:
        spec["audio"] = (lead + (int(round(cfg.audio_seconds * cfg.audio_rate)),),
                         np.dtype(np.float32))
    for key in ("features_2d", "features_3d"):
        if cfg[key]:
            spec[key] = (lead + (cfg[key],), np.dtype(np.float32))
    return spec
