"""The tf.data input pipeline: records -> sampled, decoded, batched NumPy dicts.

Phases, as in DMVR: list files (per process) -> interleave -> shuffle ->
parse -> sample (pick captions and times) -> decode only the frames used ->
augment -> batch. TensorFlow stays inside this module: callers get dicts of
NumPy arrays.

Samplers (`cfg.sampler`):

* ``"clip"`` (MIL-NCE, MCN, Hessel): anchor a random caption; a caption
  shorter than `min_caption_seconds` (5 s) is widened symmetrically to it; a
  clip of `num_frames` frames at `fps` is taken at a random time inside the
  (widened) caption; the `num_candidates` captions nearest in time to the
  anchor (itself first) are its positive candidates (K = 1 is plain NCE).
* ``"sequence"`` (VT-TWINS): `num_pairs` consecutive captions of one video,
  each with its own clip taken as above; shorter videos are padded and masked.

Training batch keys (B = per-process batch; n = num_pairs for "sequence",
else absent; K = num_candidates for "clip", 1 for "sequence"):

| key          | dtype   | shape                      | present when           |
|--------------|---------|----------------------------|------------------------|
| video        | uint8   | [B, (n,) T, H, W, 3] RGB   | cfg.video              |
| audio        | float32 | [B, (n,) A] waveform       | cfg.audio_seconds > 0  |
| features_2d  | float32 | [B, (n,) D2] window mean   | cfg.features_2d > 0    |
| features_3d  | float32 | [B, (n,) D3] window mean   | cfg.features_3d > 0    |
| text         | int32   | [B, K, L] ("clip"), [B, n, L] ("sequence"); 0 = pad |  |
| text_mask    | bool    | [B, K] / [B, n] valid candidates / pairs |          |
| label        | int32   | [B] video category (-1 unknown) |                    |
| index        | int64   | [B] position of the sample in this process's stream |  |

Video stays uint8 on the host (4x less to convert, batch and transfer than
float32); models scale it to [0, 1] on the accelerator
(`vtlearn.methods.video_text`). `benchmarks/input_pipeline.py` measured
1.77x more clips per CPU-second than float32 output at the paper setting.

Evaluation (`build_eval_dataset`) yields, for every caption or ground-truth
segment exactly once, `num_clips` clips evenly spaced over its (widened)
window, center-cropped: video [B, C, T, H, W, 3], text [B, 1, L],
text_mask [B, 1], label [B] (segment label for "segment" units, video category
for "caption" units), step [B] (caption's step index, or the segment's own),
video_id [B] (bytes), plus audio/features as in training with a leading C
axis. The final batch is padded and marked by `valid` [B] bool.

Skips: records with no usable caption (none with an in-vocabulary word, or
none whose window holds a clip inside the chunk, or no frames when video is
requested) are dropped and counted in `SkipCounter`, never turned into
empty or NaN samples.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow as tf

from vtlearn.data import records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary

AUTOTUNE = tf.data.AUTOTUNE
_EPS = 1e-4


def default_config() -> ml_collections.ConfigDict:
    """Data settings with their defaults (the MIL-NCE paper's where it has one)."""
    return ml_collections.ConfigDict(dict(
        train_files="",          # glob or comma-separated globs of TFRecords
        eval_files="",
        vocab_path="",           # one word per line (Vocabulary.save)
        max_words=16,
        sampler="clip",          # "clip" | "sequence"
        video=True,
        num_frames=32,           # T
        fps=10.0,                # F: clip frame rate
        crop_size=200,           # training random crop (square)
        eval_crop_size=224,      # evaluation center crop
        image_size=0,            # resize crops to this size (0: keep)
        flip=True,
        min_caption_seconds=5.0,
        num_candidates=5,        # K
        num_pairs=8,             # n
        audio_seconds=0.0,       # A = audio_seconds * audio_rate samples
        audio_rate=16000,
        features_2d=0,           # D2 (0: no features)
        features_3d=0,           # D3
        eval_unit="caption",     # "caption" | "segment"
        eval_text_key=S.CAPTION,  # or caption/clean_string (synthetic lab)
        eval_num_clips=4,        # C
        probe_files="",          # records whose segments train linear probes
        lab="",                  # synthetic-lab preset ("tiny", "local"); fills files
        lab_dir="",              # lab cache (default $VTLEARN_DATA_DIR or ~/.cache)
        shuffle_buffer=128,      # chunk records (~6.5 MB each at the paper setting)
        cycle_length=8,
        seed=0,
    ))


def keep_tensorflow_on_host() -> None:
    """tf.data runs on the host CPU; keep TF from taking accelerator memory."""
    tf.config.set_visible_devices([], "GPU")


class SkipCounter:
    """Counts records dropped by the sampler (shared by the tf.data graph)."""

    def __init__(self):
        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False)

    @property
    def count(self) -> int:
        return int(self.variable.numpy())


def list_files(pattern: str | Sequence[str], process_index: int = 0,
               process_count: int = 1) -> list[str]:
    """The sorted files of `pattern` that this process reads.

    Files are dealt round-robin to processes so each process reads distinct
    files.

    Raises:
      ValueError: when the pattern matches nothing or this process gets no file.
    """
    patterns = ([p for p in pattern.split(",") if p] if isinstance(pattern, str)
                else list(pattern))
    if not patterns:
        raise ValueError("No file pattern given (config key data.train_files / "
                         "data.eval_files is empty).")
    files = sorted({f for p in patterns for f in globlib.glob(p)})
    if not files:
        raise ValueError(f"File pattern {pattern!r} matches no file.")
    mine = files[process_index::process_count]
    if not mine:
        raise ValueError(
            f"Process {process_index} of {process_count} gets no file: "
            f"{pattern!r} has only {len(files)} file(s); write at least "
            f"{process_count} shards.")
    return mine


# Sampling (graph code) ----------------------------------------------------------


def _caption_windows(ex, min_seconds):
    """Widened caption windows clipped to the chunk: (lo, hi) [N] each."""
    start, end = ex[S.CAPTION_START], ex[S.CAPTION_END]
    pad = tf.maximum(0.0, (min_seconds - (end - start)) / 2)
    lo = tf.maximum(start - pad, ex[S.CHUNK_START])
    hi = tf.minimum(end + pad, ex[S.CHUNK_END])
    return lo, hi


def _clip_seconds(cfg) -> float:
    return cfg.num_frames / cfg.fps if cfg.video else 0.0


def _usable(ex, text_ids, cfg):
    """[N] bool: captions with a word in vocabulary whose window holds a clip."""
    lo, hi = _caption_windows(ex, cfg.min_caption_seconds)
    has_words = tf.reduce_any(text_ids != 0, axis=-1)
    span = _clip_seconds(cfg) if cfg.video else 0.0
    fits = hi - lo >= span - _EPS
    if cfg.video:
        fits &= tf.shape(ex[S.FRAMES])[0] > 0
    # A window must also hold at least one instant inside the chunk.
    fits &= hi > lo
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


def _window_mean(feats, rate, chunk_start, lo, hi):
    """Mean of feature steps overlapping [lo, hi) -> [..., D]; zeros if none."""
    n = tf.shape(feats)[0]
    t = chunk_start + tf.cast(tf.range(n), tf.float32) / tf.maximum(rate, _EPS)
    t_end = t + 1.0 / tf.maximum(rate, _EPS)
    w = tf.cast((t[None] < hi[:, None]) & (t_end[None] > lo[:, None]), tf.float32)
    return tf.math.divide_no_nan(w @ feats, tf.reduce_sum(w, -1, keepdims=True))


def _audio_windows(ex, center, cfg):
    """Waveform windows [..., A] of audio_seconds centered at `center` [...]."""
    wav, rate = ex[S.WAVEFORM], ex[S.SAMPLE_RATE]
    length = int(round(cfg.audio_seconds * cfg.audio_rate))
    tf.debugging.assert_near(rate, float(cfg.audio_rate), message=(
        f"record audio rate differs from data.audio_rate={cfg.audio_rate}"))
    first = tf.cast(tf.round((center - ex[S.CHUNK_START]) * rate), tf.int32) - length // 2
    idx = first[..., None] + tf.range(length)
    inside = (idx >= 0) & (idx < tf.shape(wav)[0])
    return tf.where(inside, tf.gather(wav, tf.clip_by_value(idx, 0, tf.shape(wav)[0] - 1)),
                    0.0)


def _modalities(ex, lo, hi, clip_start, seed, cfg, train):
    """Per-anchor clips for windows [n]: video/audio/features with leading n."""
    out = {}
    span = _clip_seconds(cfg)
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
    if cfg.audio_seconds > 0:
        out["audio"] = _audio_windows(ex, center, cfg)
    for key, dim in (("features_2d", cfg.features_2d), ("features_3d", cfg.features_3d)):
        if dim:
            feats = ex[S.FEATURES_2D if key == "features_2d" else S.FEATURES_3D]
            flo, fhi = (clip_start, clip_start + span) if cfg.video else (lo, hi)
            out[key] = _window_mean(feats, ex[S.FEATURE_RATE], ex[S.CHUNK_START],
                                    tf.reshape(flo, [-1]), tf.reshape(fhi, [-1]))
    return out


def _random_clip_starts(lo, hi, span, seed):
    u = tf.random.stateless_uniform(tf.shape(lo), seed)
    return lo + u * tf.maximum(hi - lo - span, 0.0)


def _sample_clip(ex, text_ids, usable, seed, cfg):
    """MIL-NCE sampler: one anchor clip with K nearest-caption candidates."""
    lo, hi = _caption_windows(ex, cfg.min_caption_seconds)
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
    clip_start = _random_clip_starts(lo[a][None], hi[a][None], _clip_seconds(cfg),
                                     seed + 2)
    out = _modalities(ex, lo[a][None], hi[a][None], clip_start, seed + 3, cfg, True)
    out = {k_: v[0] for k_, v in out.items()}
    out.update(text=text, text_mask=mask)
    return out


def _sample_sequence(ex, text_ids, usable, seed, cfg):
    """VT-TWINS sampler: n consecutive usable captions, each with its clip."""
    n = cfg.num_pairs
    lo, hi = _caption_windows(ex, cfg.min_caption_seconds)
    idx = tf.cast(tf.where(usable)[:, 0], tf.int32)
    m = tf.shape(idx)[0]
    first = tf.random.stateless_uniform([], seed, 0, tf.maximum(m - n, 0) + 1, tf.int32)
    pos = first + tf.range(n)
    mask = pos < m
    sel = tf.gather(idx, tf.minimum(pos, m - 1))
    clip_start = _random_clip_starts(tf.gather(lo, sel), tf.gather(hi, sel),
                                     _clip_seconds(cfg), seed + 2)
    out = _modalities(ex, tf.gather(lo, sel), tf.gather(hi, sel), clip_start,
                      seed + 3, cfg, True)
    out = {k: tf.where(tf.reshape(mask, [n] + [1] * (len(v.shape) - 1)), v, tf.zeros_like(v))
           for k, v in out.items()}
    out.update(text=tf.where(mask[:, None], tf.gather(text_ids, sel), 0),
               text_mask=mask)
    return out


# Datasets ------------------------------------------------------------------


def _parse_fn(cfg):
    def parse(serialized):
        return records.parse_example(
            serialized, frames=cfg.video, waveform=cfg.audio_seconds > 0,
            features_2d=cfg.features_2d, features_3d=cfg.features_3d)
    return parse


def build_train_dataset(cfg: ml_collections.ConfigDict, batch_size: int, *,
                        process_index: int = 0, process_count: int = 1,
                        start_index: int = 0,
                        skips: SkipCounter | None = None) -> tf.data.Dataset:
    """The infinite, shuffled training stream of this process.

    Args:
      cfg: data config (see `default_config`).
      batch_size: per-process batch size B.
      process_index, process_count: this process among all.
      start_index: resume position: samples before it are skipped before
        decoding (saved by the trainer as the last batch's `index` + 1).
      skips: counts dropped records.

    Returns:
      A dataset of batched dicts (keys in the module docstring).
    """
    files = list_files(cfg.train_files, process_index, process_count)
    vocab = Vocabulary.load(cfg.vocab_path)
    table = vocab.tf_lookup_table()
    seed = cfg.seed * 1_000_003 + process_index
    skips = skips or SkipCounter()
    sampler = {"clip": _sample_clip, "sequence": _sample_sequence}.get(cfg.sampler)
    if sampler is None:
        raise ValueError(f"data.sampler must be 'clip' or 'sequence', got {cfg.sampler!r}")
    parse = _parse_fn(cfg)

    def sample(index, serialized):
        ex = parse(serialized)
        text_ids = Vocabulary.tf_encode(table, ex[S.CAPTION], cfg.max_words)
        usable = _usable(ex, text_ids, cfg)
        ok = tf.reduce_any(usable)
        key = tf.stack([tf.constant(seed, tf.int64), index])
        out = tf.cond(ok, lambda: sampler(ex, text_ids, usable, key, cfg),
                      lambda: _empty_sample(cfg))
        out["label"] = tf.cast(ex[S.CATEGORY], tf.int32)
        out["index"] = index
        out["_ok"] = ok
        return out

    def keep(x):
        tf.cond(x["_ok"], tf.no_op, lambda: skips.variable.assign_add(1).op)
        return x["_ok"]

    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cfg.cycle_length, len(files)),
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.shuffle(cfg.shuffle_buffer, seed=seed + 1)
    ds = ds.enumerate().skip(start_index)
    ds = ds.map(sample, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(keep)
    ds = ds.map(lambda x: {k: v for k, v in x.items() if k != "_ok"})
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def _empty_sample(cfg):
    """A zero sample with the sampler's output structure (filtered out later)."""
    size = cfg.image_size or cfg.crop_size
    lead = [cfg.num_pairs] if cfg.sampler == "sequence" else []
    k = cfg.num_pairs if cfg.sampler == "sequence" else cfg.num_candidates
    out = {}
    if cfg.video:
        out["video"] = tf.zeros(lead + [cfg.num_frames, size, size, 3], tf.uint8)
    if cfg.audio_seconds > 0:
        out["audio"] = tf.zeros(lead + [int(round(cfg.audio_seconds * cfg.audio_rate))])
    if cfg.features_2d:
        out["features_2d"] = tf.zeros(lead + [cfg.features_2d])
    if cfg.features_3d:
        out["features_3d"] = tf.zeros(lead + [cfg.features_3d])
    out["text"] = tf.zeros([k, cfg.max_words], tf.int32)
    out["text_mask"] = tf.zeros([k], tf.bool)
    return out


def build_eval_dataset(cfg: ml_collections.ConfigDict, batch_size: int, *,
                       files: str | Sequence[str] | None = None, process_index: int = 0,
                       process_count: int = 1) -> tf.data.Dataset:
    """Deterministic evaluation units (captions or segments), each exactly once.

    Every caption/segment is emitted by the chunk that contains its center.
    The last batch may be short (`iterate_eval` pads it).
    """
    if isinstance(files, (list, tuple)):
        files = list(files)
    else:
        files = list_files(files or cfg.eval_files, process_index, process_count)
    vocab = Vocabulary.load(cfg.vocab_path)
    table = vocab.tf_lookup_table()
    parse = _parse_fn(cfg)
    if cfg.eval_unit not in ("caption", "segment"):
        raise ValueError(f"data.eval_unit must be 'caption' or 'segment', got "
                         f"{cfg.eval_unit!r}")
    span = _clip_seconds(cfg)
    c = cfg.eval_num_clips

    def units(serialized):
        ex = parse(serialized)
        if cfg.eval_unit == "caption":
            start, end = ex[S.CAPTION_START], ex[S.CAPTION_END]
            texts = ex[cfg.eval_text_key]
            label = tf.fill(tf.shape(start), tf.cast(ex[S.CATEGORY], tf.int32))
            tf.debugging.assert_equal(tf.size(texts), tf.size(start), message=(
                f"records lack data.eval_text_key={cfg.eval_text_key!r} for "
                "every caption"))
            step = tf.cast(ex[S.CAPTION_STEP], tf.int32)
            step = tf.cond(tf.size(step) > 0, lambda: step,
                           lambda: -tf.ones(tf.shape(start), tf.int32))
        else:
            start, end = ex[S.SEGMENT_START], ex[S.SEGMENT_END]
            label = tf.cast(ex[S.SEGMENT_LABEL], tf.int32)
            texts = tf.fill(tf.shape(start), "")
            step = tf.range(tf.shape(start)[0], dtype=tf.int32)
        center = (start + end) / 2
        text_ids = Vocabulary.tf_encode(table, texts, cfg.max_words)
        lo, hi = _caption_windows({S.CAPTION_START: start, S.CAPTION_END: end,
                                   S.CHUNK_START: ex[S.CHUNK_START],
                                   S.CHUNK_END: ex[S.CHUNK_END]},
                                  cfg.min_caption_seconds)
        own = (center >= ex[S.CHUNK_START]) & (center < ex[S.CHUNK_END])
        own &= hi - lo >= span - _EPS
        if cfg.eval_unit == "caption":
            own &= tf.reduce_any(text_ids != 0, axis=-1)
        if cfg.video:
            own &= tf.shape(ex[S.FRAMES])[0] > 0
        sel = tf.cast(tf.where(own)[:, 0], tf.int32)
        lo, hi = tf.gather(lo, sel), tf.gather(hi, sel)
        frac = (tf.range(c, dtype=tf.float32) + 0.5) / c
        clip_start = lo[:, None] + frac[None] * tf.maximum(hi - lo - span, 0.0)[:, None]
        flat = _modalities(ex, tf.repeat(lo, c), tf.repeat(hi, c),
                           tf.reshape(clip_start, [-1]), tf.constant([0, 0], tf.int64),
                           cfg, train=False)
        u = tf.shape(sel)[0]
        out = {k: tf.reshape(v, tf.concat([[u, c], tf.shape(v)[1:]], 0))
               for k, v in flat.items()}
        out["text"] = tf.gather(text_ids, sel)[:, None]
        out["text_mask"] = tf.ones([u, 1], tf.bool)
        out["label"] = tf.gather(label, sel)
        out["step"] = tf.gather(step, sel)
        out["video_id"] = tf.fill([u], ex[S.VIDEO_ID])
        out["valid"] = tf.ones([u], tf.bool)
        return tf.data.Dataset.from_tensor_slices(out)

    ds = tf.data.Dataset.from_tensor_slices(files).flat_map(tf.data.TFRecordDataset)
    ds = ds.flat_map(units)
    return ds.batch(batch_size)


def numpy_batches(dataset: tf.data.Dataset, cfg: ml_collections.ConfigDict,
                  files: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
    """Iterates `dataset` as NumPy; a bad record raises an error naming it.

    tf.data reports corrupt bytes or a missing key without the file; on such
    an error this scans `files` to name the file, record and key.

    Raises:
      records.RecordError: for a corrupt or unparsable record.
    """
    iterator = dataset.as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            found = records.find_bad_record(
                files, frames=cfg.video, waveform=cfg.audio_seconds > 0,
                features_2d=cfg.features_2d, features_3d=cfg.features_3d)
            if found is None:
                raise
            raise found from e
        # Outside the try: closing the generator (at exit, when TensorFlow may
        # be half torn down) must not evaluate the except clauses.
        yield batch


def iterate_train(cfg: ml_collections.ConfigDict, batch_size: int, *,
                  process_index: int = 0, process_count: int = 1,
                  **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """NumPy batches of `build_train_dataset` (same arguments); bad records named."""
    files = list_files(cfg.train_files, process_index, process_count)
    dataset = build_train_dataset(cfg, batch_size, process_index=process_index,
                                  process_count=process_count, **kwargs)
    return numpy_batches(dataset, cfg, files)


def iterate_eval(cfg, batch_size: int, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """NumPy batches of `build_eval_dataset`, the last one padded to `batch_size`."""
    files = list_files(kwargs.pop("files", None) or cfg.eval_files,
                       kwargs.get("process_index", 0), kwargs.get("process_count", 1))
    dataset = build_eval_dataset(cfg, batch_size, files=files, **kwargs)
    for batch in numpy_batches(dataset, cfg, files):
        n = len(batch["valid"])
        if n < batch_size:
            batch = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:],
                                                    v.dtype)]) for k, v in batch.items()}
        yield batch
