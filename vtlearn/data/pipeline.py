"""The tf.data input pipeline: records -> sampled, decoded, batched NumPy dicts.

Phases, as in DMVR: list files (per process) -> interleave -> shuffle ->
parse -> sample (pick captions and times) -> decode only the frames used ->
augment -> batch. TensorFlow stays inside this module: callers get dicts of
NumPy arrays.

Samplers (`cfg.sampler`, `vtlearn.data.samplers`) turn a record into a
training sample: "clip" (MIL-NCE: an anchor clip with its K nearest
captions), "sequence" (VT-TWINS: n consecutive clip-caption pairs),
"segments" (Hessel et al.: n random fixed-length segments with their ASR)
and "merged" (MCN: n captions drawn with replacement, each merged with its
neighbours to at least min_caption_seconds).

Training batch keys (B = per-process batch; n = num_pairs for the samplers
with several pairs, else absent; K = num_candidates for "clip"):

| key          | dtype   | shape                      | present when           |
|--------------|---------|----------------------------|------------------------|
| video        | uint8   | [B, (n,) T, H, W, 3] RGB   | cfg.video              |
| audio        | float32 | [B, (n,) A] waveform, or   | cfg.audio_seconds > 0  |
|              |         | [B, (n,) F, M] log-mel dB  | and audio_features="log_mel" |
| audio_frames | int32   | [B, (n,)] valid frames F   | audio_features="log_mel" |
| features_2d  | float32 | [B, (n,) D2] window pooled | cfg.features_2d > 0    |
| features_3d  | float32 | [B, (n,) D3] window pooled | cfg.features_3d > 0    |
| text         | int32   | [B, K, L] ("clip"), [B, n, L] ("sequence"); 0 = pad |  |
| text_mask    | bool    | [B, K] / [B, n] valid candidates / pairs |          |
| span         | float32 | [B, n, 2] clip start, end (s) | sampler "merged" |
| label        | int32   | [B] video category (-1 unknown) |                    |
| index        | int64   | [B] position of the sample in this process's stream |  |

Video stays uint8 on the host (4x less to convert, batch and transfer than
float32); models scale it to [0, 1] on the accelerator
(`vtlearn.methods.video_text`). `benchmarks/input_pipeline.py` measured
1.77x more clips per CPU-second than float32 output at the paper setting.

Evaluation (`build_eval_dataset`) yields every unit (caption, ground-truth
segment or sliding window, see `Units`) exactly once, as `num_clips` clips
evenly spaced over its window, center-cropped: video [B, C, T, H, W, 3]
(audio/features as in training with a leading C axis), text [B, 1, L] (the
caption; for windows the ASR overlapping them; zeros for segments),
text_mask [B, 1], label [B], step [B] (the caption's step index, the
segment's own index, or the window's segment, -1 for none), category [B]
(video category), start/end [B]
(the unit's window in video seconds, before widening), video_id [B]
(bytes). The final batch is padded and marked by `valid` [B] bool.

Skips: records with no usable caption (none with an in-vocabulary word, or
none whose window holds a clip inside the chunk, or no frames when video is
requested, or no audio, or only zeros, when audio is requested) are dropped
and counted by reason in `SkipCounter`, never turned into empty or NaN
samples. Training records that can never yield a sample stop the run with
`NoUsableRecordError` instead of spinning forever inside tf.data: at once when
every file of a process is empty (the converter writes an empty shard when
all its videos fail), else after `data.max_unusable_in_a_row` records in a row
without a sample (all out of vocabulary, all too short, no category in
`train_categories`, ...).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from vtlearn import fs
from vtlearn.data import clips, records
from vtlearn.data import schema as S
from vtlearn.data.positions import ReadPositions
from vtlearn.data.samplers import get_sampler
from vtlearn.data.text import Vocabulary

AUTOTUNE = tf.data.AUTOTUNE


def default_config() -> ml_collections.ConfigDict:
    """Data settings with their defaults (the MIL-NCE paper's where it has one)."""
    return ml_collections.ConfigDict(dict(
        train_files="",          # glob or comma-separated globs of TFRecords
        eval_files="",
        vocab_path="",           # one word per line (Vocabulary.save)
        max_words=16,
        sampler="clip",          # a module of vtlearn/data/samplers (or a dotted user module)
        video=True,
        num_frames=32,           # T
        fps=10.0,                # F: clip frame rate
        crop_size=200,           # training random crop (square)
        eval_crop_size=224,      # evaluation center crop
        image_size=0,            # resize crops to this size (0: keep)
        flip=True,
        min_caption_seconds=5.0,
        num_candidates=5,        # K
        num_pairs=8,             # n: pairs per sample ("sequence", "segments")
        segment_seconds=5.0,     # "segments": fixed segment length
        candidate_segments=256,  # "segments": random candidates per record
        audio_seconds=0.0,       # A = audio_seconds * audio_rate samples
        audio_rate=16000,
        audio_features="waveform",  # "waveform" [A] | "log_mel" [audio_seconds/10 ms, bands]
        num_mel_bands=40,
        features_2d=0,           # D2 (0: no features)
        features_3d=0,           # D3
        feature_pooling="mean",  # over a window's feature steps: "mean" | "l2_max" | "max_l2"
        eval_text_key="",        # "": caption/string; on the lab caption/clean_string
        eval_num_clips=4,        # C
        probe_files="",          # records whose segments train linear probes
        lab="",                  # synthetic-lab preset ("tiny", "local"); fills files
        lab_dir="",              # lab cache (default $VTLEARN_DATA_DIR or ~/.cache)
        train_categories=(),     # train only on videos of these category ids (() = all)
        shuffle_buffer=128,      # chunk records (~6.5 MB each at the paper setting)
        max_unusable_in_a_row=10_000,  # records read without a sample before stopping
        cycle_length=8,
        seed=0,
    ))


def keep_tensorflow_on_host() -> None:
    """tf.data runs on the host CPU; keep TF from taking accelerator memory."""
    tf.config.set_visible_devices([], "GPU")


class NoUsableRecordError(ValueError):
    """The training records of a process can yield no sample."""


_NO_SAMPLE = "vtlearn: no usable training sample"


class SkipCounter:
    """Counts training chunks that can yield no sample, by reason (shared by the
    tf.data graph). These are expected in narrated video, not damage (a corrupt
    record stops the run, naming it):

    * "no_caption": no caption with an in-vocabulary word (or none at all);
    * "no_audio": audio is requested and the chunk has none, or only zeros;
    * "no_clip": captions with words, but no caption window holds a clip
      inside the chunk (too short, cut by the chunk's end, or no frames).
    """

    REASONS = ("no_caption", "no_audio", "no_clip")

    def __init__(self):
        self.variable = tf.Variable(tf.zeros([len(self.REASONS)], tf.int64), trainable=False)

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.REASONS, (int(c) for c in self.variable.numpy())))

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def reason(self, ex, text_ids, cfg) -> tf.Tensor:
        """int32 index into `REASONS` of why an unusable chunk yields nothing."""
        no_words = ~tf.reduce_any(text_ids != 0)
        no_audio = tf.constant(False)
        if cfg.audio_seconds > 0:
            no_audio = ~tf.reduce_any(ex[S.WAVEFORM] != 0.0)
        return tf.where(no_words, 0, tf.where(no_audio, 1, 2))


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
    found = sorted({f for p in patterns for f in fs.glob(p)})
    if not found:
        raise ValueError(f"File pattern {pattern!r} matches no file.")
    mine = found[process_index::process_count]
    if not mine:
        raise ValueError(
            f"Process {process_index} of {process_count} gets no file: "
            f"{pattern!r} has only {len(found)} file(s); write at least "
            f"{process_count} shards.")
    return mine


# Datasets ------------------------------------------------------------------


def _parse_fn(cfg):
    def parse(serialized):
        return records.parse_example(
            serialized, frames=cfg.video, waveform=cfg.audio_seconds > 0,
            features_2d=cfg.features_2d, features_3d=cfg.features_3d)
    return parse


def build_train_dataset(cfg: ml_collections.ConfigDict, batch_size: int, *,
                        process_index: int = 0, process_count: int = 1,
                        start_index: int = 0, seed_offset: int = 0,
                        skips: SkipCounter | None = None,
                        positions: ReadPositions | None = None) -> tf.data.Dataset:
    """The infinite, shuffled training stream of this process.

    Args:
      cfg: data config (see `default_config`).
      batch_size: per-process batch size B.
      process_index, process_count: this process among all.
      start_index: resume position: samples before it are skipped before
        decoding, which reads every record before it (a `TrainStream`
        restored from its saved state reads none).
      seed_offset: another stream of the same seed (a run resumed on another
        number of processes starts the data order afresh with its step).
      skips: counts dropped records.
      positions: of this process's files: tracks the records read, to name a
        bad one (`numpy_batches`).

    Returns:
      A dataset of batched dicts (keys in the module docstring).
    """
    files = list_files(cfg.train_files, process_index, process_count)
    if cfg.max_unusable_in_a_row <= 0:
        raise ValueError("config.data.max_unusable_in_a_row must be > 0, got "
                         f"{cfg.max_unusable_in_a_row}")
    if all(fs.size(f) == 0 for f in files):
        raise NoUsableRecordError(
            f"All {len(files)} training file(s) of process {process_index} are empty "
            f"({_some(files)}): no record to train on. The converter writes an empty "
            "shard when every video of it fails; its <prefix>.summary.json says why.")
    vocab = Vocabulary.load(cfg.vocab_path)
    table = vocab.tf_lookup_table()
    seed = cfg.seed * 1_000_003 + process_index + 7_919 * seed_offset
    skips = skips or SkipCounter()
    # Records read since the last sample: a stream that yields none must stop.
    unusable = tf.Variable(tf.zeros([], tf.int64), trainable=False)

    def count_unusable(usable):
        """Resets the count on a sample, else adds one; stops at the limit."""
        run = tf.cond(usable, lambda: unusable.assign(0), lambda: unusable.assign_add(1))
        return tf.debugging.Assert(run < cfg.max_unusable_in_a_row, [_NO_SAMPLE])
    sampler = get_sampler(cfg)
    parse = _parse_fn(cfg)

    def sample(index, serialized):
        ex = parse(serialized)
        index = positions.note_parsed(index, ex)
        text_ids = Vocabulary.tf_encode(table, ex[S.CAPTION], cfg.max_words)
        usable = clips.usable_captions(ex, text_ids, cfg)
        ok = tf.reduce_any(usable)
        key = tf.stack([tf.constant(seed, tf.int64), index])
        out = tf.cond(ok, lambda: sampler.sample(ex, text_ids, usable, key), sampler.empty)
        out["label"] = tf.cast(ex[S.CATEGORY], tf.int32)
        out["index"] = index
        out["_ok"] = ok
        out["_reason"] = skips.reason(ex, text_ids, cfg)
        return out

    def keep(x):
        tf.cond(x["_ok"], tf.no_op, lambda: skips.variable.scatter_nd_add(
            x["_reason"][None, None], tf.ones([1], tf.int64)).op)
        with tf.control_dependencies([count_unusable(x["_ok"])]):
            return tf.identity(x["_ok"])

    cycle_length = min(cfg.cycle_length, len(files))
    positions = positions or ReadPositions(files)
    order = tf.data.Dataset.range(len(files))
    order = order.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = positions.read(order, cycle_length, parallel=True)
    if cfg.train_categories:
        wanted = _category_filter(tuple(cfg.train_categories))

        def in_categories(file, record, serialized):
            ok = wanted(serialized)
            with tf.control_dependencies([tf.cond(ok, tf.no_op, lambda: count_unusable(ok))]):
                return tf.identity(ok)  # a record of another category never resets it

        ds = ds.filter(in_categories)
    ds = ds.shuffle(cfg.shuffle_buffer, seed=seed + 1)
    ds = ds.enumerate().skip(start_index).map(positions.note_parsing)
    ds = ds.map(lambda index, element: sample(index, element[2]),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(keep)
    ds = ds.map(lambda x: {k: v for k, v in x.items() if k not in ("_ok", "_reason")})
    options = tf.data.Options()  # the skip counters are not part of a saved position
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE).with_options(options)


def _category_filter(categories: tuple[int, ...]):
    """Keeps records whose video category is one of `categories` (parses only it)."""
    wanted = tf.constant(categories, tf.int64)

    def keep(serialized):
        context, _ = tf.io.parse_single_sequence_example(serialized, context_features={
            S.CATEGORY: tf.io.FixedLenFeature([], tf.int64, default_value=-1)})
        return tf.reduce_any(tf.equal(context[S.CATEGORY], wanted))

    return keep


def sample_spec(cfg: ml_collections.ConfigDict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample (shape, dtype) of the training batch keys the devices get.

    The sampler's keys but its `host_keys`, plus "label"; "index" and the
    `host_keys` stay on the host (`host_keys`). Lets a model be built and
    restored without reading any record.
    """
    sampler = get_sampler(cfg)
    return {k: v for k, v in sampler.output_spec().items() if k not in sampler.host_keys} | {
        "label": ((), np.dtype(np.int32))}


def host_keys(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Training batch keys that stay on the host: "index" (the resume position)
    and the sampler's `host_keys`."""
    return ("index",) + get_sampler(cfg).host_keys


@dataclasses.dataclass(frozen=True)
class Units:
    """Which evaluation units `build_eval_dataset` cuts out of each video.

    Attributes:
      kind: "caption" (every caption with a word in vocabulary; text from
        `data.eval_text_key`, label = video category), "segment" (every
        ground-truth step segment, label = its step label) or "window"
        (sliding windows of `window_seconds` starting every
        `stride_seconds` from 0 up to the video's duration; text = the
        words of the captions (`caption/string`, the ASR) overlapping the
        window, in time order; label = the step label of the segment
        holding the window's center, -1 in background) or "video" (the whole
        video, label = its category; for records that hold each video in one
        chunk, as the benchmark conversion writes them). Caption and segment
        windows shorter than `min_seconds` are widened to it (symmetrically,
        inside the chunk).
      num_clips: C clips evenly spaced over each window (0: `data.eval_num_clips`).
      window_seconds, stride_seconds: "window" units only.
      min_seconds: the shortest caption or segment window; -1 = `data.min_caption_seconds`
        (what training widens captions to); a window must still hold one clip.
      keep_wordless: keep caption units whose text has no word in the
        vocabulary (benchmarks: every annotated clip is a query).
    """

    kind: str = "caption"
    num_clips: int = 0
    window_seconds: float = 1.0
    stride_seconds: float = 1.0
    min_seconds: float = -1.0
    keep_wordless: bool = False

    def __post_init__(self):
        if self.kind not in UNIT_KINDS:
            raise ValueError(f"evaluation unit kind must be one of {UNIT_KINDS}, "
                             f"got {self.kind!r}")
        if self.kind == "window" and not (self.window_seconds > 0 and self.stride_seconds > 0):
            raise ValueError(f"window units need window_seconds > 0 and stride_seconds > 0, "
                             f"got {self.window_seconds} and {self.stride_seconds}")
        if self.num_clips < 0:
            raise ValueError(f"num_clips must be >= 0, got {self.num_clips}")


UNIT_KINDS = ("caption", "segment", "window", "video")


def build_eval_dataset(cfg: ml_collections.ConfigDict, batch_size: int,
                       units: Units = Units(), *,
                       files: str | Sequence[str] | None = None, process_index: int = 0,
                       process_count: int = 1,
                       positions: ReadPositions | None = None) -> tf.data.Dataset:
    """Deterministic evaluation units (see `Units`), each exactly once.

    Every unit is emitted by the chunk that contains its window's center.
    The last batch may be short (`iterate_eval` pads it). `positions` (of
    `files`) tracks the records read, to name a bad one (`numpy_batches`).
    """
    if isinstance(files, (list, tuple)):
        files = list(files)
    else:
        files = list_files(files or cfg.eval_files, process_index, process_count)
    vocab = Vocabulary.load(cfg.vocab_path)
    table = vocab.tf_lookup_table()
    parse = _parse_fn(cfg)
    span = clips.clip_seconds(cfg)
    c = units.num_clips or cfg.eval_num_clips

    def windows(ex):
        """(start, end, texts, label, step) [U] of this record's candidate units."""
        seg_start, seg_end = ex[S.SEGMENT_START], ex[S.SEGMENT_END]
        if units.kind == "caption":
            start, end = ex[S.CAPTION_START], ex[S.CAPTION_END]
            text_key = cfg.eval_text_key or S.CAPTION
            texts = ex[text_key]
            tf.debugging.assert_equal(tf.size(texts), tf.size(start), message=(
                f"records lack data.eval_text_key={text_key!r} for every caption"))
            label = tf.fill(tf.shape(start), tf.cast(ex[S.CATEGORY], tf.int32))
            return start, end, texts, label, clips.caption_steps(ex)
        if units.kind == "segment":
            return (seg_start, seg_end, tf.fill(tf.shape(seg_start), ""),
                    tf.cast(ex[S.SEGMENT_LABEL], tf.int32),
                    tf.range(tf.shape(seg_start)[0], dtype=tf.int32))
        if units.kind == "video":
            tf.debugging.assert_less_equal(
                ex[S.CHUNK_START] - ex[S.CHUNK_END] + ex[S.DURATION], 1e-3, message=(
                    "\"video\" units need each video in one record (the benchmark "
                    "conversion writes them so); this video is cut into chunks"))
            return ([0.0], tf.reshape(ex[S.DURATION], [1]), [""],
                    tf.reshape(tf.cast(ex[S.CATEGORY], tf.int32), [1]), [-1])
        count = tf.cast(tf.math.ceil(ex[S.DURATION] / units.stride_seconds), tf.int32)
        start = tf.cast(tf.range(count), tf.float32) * units.stride_seconds
        end = start + units.window_seconds
        center = (start + end) / 2
        inside = (center[:, None] >= seg_start[None]) & (center[:, None] < seg_end[None])
        # A last "background" column keeps argmax defined for videos without segments.
        inside = tf.concat([inside, tf.ones([tf.shape(inside)[0], 1], tf.bool)], 1)
        step = tf.cast(tf.argmax(tf.cast(inside, tf.int32), 1), tf.int32)
        labels = tf.concat([tf.cast(ex[S.SEGMENT_LABEL], tf.int32), [-1]], 0)
        label = tf.gather(labels, step)
        step = tf.where(step < tf.size(seg_start), step, -1)
        return start, end, None, label, step

    def cut(position, element):
        ex = parse(element[2])
        parsed = positions.note_parsed(position, ex)
        start, end, texts, label, step = windows(ex)
        center = (start + end) / 2
        if texts is None:  # windows: the ASR spoken during them
            text_ids = clips.overlapping_text(
                Vocabulary.tf_encode(table, ex[S.CAPTION], cfg.max_words),
                ex[S.CAPTION_START], ex[S.CAPTION_END], start, end, cfg.max_words)
        else:
            text_ids = Vocabulary.tf_encode(table, texts, cfg.max_words)
        if units.kind == "window":
            lo = tf.maximum(start, ex[S.CHUNK_START])
            hi = tf.minimum(end, ex[S.CHUNK_END])
        else:
            lo, hi = clips.caption_windows({S.CAPTION_START: start, S.CAPTION_END: end,
                                            S.CHUNK_START: ex[S.CHUNK_START],
                                            S.CHUNK_END: ex[S.CHUNK_END]},
                                           max(span, cfg.min_caption_seconds
                                               if units.min_seconds < 0 else units.min_seconds))
        own = (center >= ex[S.CHUNK_START]) & (center < ex[S.CHUNK_END]) & (hi > lo)
        if units.kind in ("caption", "segment"):
            own &= hi - lo >= span - clips.EPS
        if units.kind == "caption" and not units.keep_wordless:
            own &= tf.reduce_any(text_ids != 0, axis=-1)
        if cfg.video:
            own &= tf.shape(ex[S.FRAMES])[0] > 0
        sel = tf.cast(tf.where(own)[:, 0], tf.int32)
        lo, hi = tf.gather(lo, sel), tf.gather(hi, sel)
        frac = (tf.range(c, dtype=tf.float32) + 0.5) / c
        # A window shorter than a clip ("window", "video" units) gets clips centred on it.
        first = tf.where(hi - lo < span, (lo + hi - span) / 2, lo)
        clip_start = first[:, None] + frac[None] * tf.maximum(hi - lo - span, 0.0)[:, None]
        flat = clips.modalities(ex, tf.repeat(lo, c), tf.repeat(hi, c),
                                tf.reshape(clip_start, [-1]), tf.constant([0, 0], tf.int64),
                                cfg, train=False)
        u = tf.shape(sel)[0]
        out = {k: tf.reshape(v, tf.concat([[u, c], tf.shape(v)[1:]], 0))
               for k, v in flat.items()}
        out["text"] = tf.gather(text_ids, sel)[:, None]
        out["text_mask"] = tf.ones([u, 1], tf.bool)
        out["label"] = tf.gather(label, sel)
        out["step"] = tf.gather(step, sel)
        out["category"] = tf.fill([u], tf.cast(ex[S.CATEGORY], tf.int32))
        out["start"] = tf.gather(start, sel)
        out["end"] = tf.gather(end, sel)
        out["video_id"] = tf.fill([u], ex[S.VIDEO_ID])
        out["valid"] = tf.fill([u], parsed >= 0)  # all true, after the note is taken
        return tf.data.Dataset.from_tensor_slices(out)

    positions = positions or ReadPositions(files)
    ds = positions.read(tf.data.Dataset.range(len(files)))
    ds = ds.enumerate().map(positions.note_parsing).flat_map(cut)
    return ds.batch(batch_size).prefetch(2)  # cut the next batch while this one embeds


def numpy_batches(dataset: tf.data.Dataset | Iterator, cfg: ml_collections.ConfigDict,
                  positions: ReadPositions) -> Iterator[dict[str, np.ndarray]]:
    """Iterates `dataset` (or a tf.data iterator) as NumPy; a bad record raises
    an error naming it.

    tf.data reports corrupt bytes or a record that does not parse without the
    file; `positions` (the dataset's) names the file, record and key from
    where the readers are, reading single records (never a file from its
    start) of the files open and the records in flight.

    Raises:
      records.RecordError: for a corrupt or unparsable record.
    """
    iterator = iter(dataset)
    while True:
        try:
            batch = tf.nest.map_structure(lambda t: t.numpy(), next(iterator))
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            if _NO_SAMPLE in str(e):
                raise  # not a bad record: the caller names the cause
            found = positions.locate(
                e, frames=cfg.video, waveform=cfg.audio_seconds > 0,
                features_2d=cfg.features_2d, features_3d=cfg.features_3d)
            if found is None:
                raise
            raise found from e
        # Outside the try: closing the generator (at exit, when TensorFlow may
        # be half torn down) must not evaluate the except clauses.
        yield batch


STREAM_FILE = "stream.json"


class TrainStream:
    """This process's NumPy training batches (`build_train_dataset`), whose
    position saves and restores without reading the records before it.

    `save(directory)` writes the tf.data iterator's state (its file order,
    readers' offsets, shuffle and prefetch buffers: bounded by
    `data.shuffle_buffer` and the batch, not by the step) and `stream.json`;
    `iterate_train(..., resume_from=directory)` rebuilds the same pipeline and
    restores it, so the next batch is the one an uninterrupted run would get.

    Raises (while iterating):
      NoUsableRecordError: after `data.max_unusable_in_a_row` records in a
        row without a sample, naming the files and the reasons.
      records.RecordError: for a corrupt or unparsable record.
    """

    def __init__(self, cfg: ml_collections.ConfigDict, batch_size: int, *, process_index: int,
                 process_count: int, start_index: int, seed_offset: int,
                 skips: SkipCounter):
        self.cfg, self.skips, self.start_index = cfg, skips, start_index
        self.seed_offset = seed_offset
        self.files = list_files(cfg.train_files, process_index, process_count)
        positions = ReadPositions(self.files)
        dataset = build_train_dataset(cfg, batch_size, process_index=process_index,
                                      process_count=process_count, start_index=start_index,
                                      seed_offset=seed_offset, skips=skips,
                                      positions=positions)
        self._iterator = iter(dataset)
        self._batches = numpy_batches(self._iterator, cfg, positions)
        self.restored = False  # whether the position came from a saved state

    def __iter__(self) -> TrainStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        try:
            return next(self._batches)
        except tf.errors.InvalidArgumentError as e:
            if _NO_SAMPLE not in str(e):
                raise
            cfg, files = self.cfg, self.files
            counts = ", ".join(f"{k}={v}" for k, v in self.skips.counts.items())
            categories = (f"; records outside data.train_categories="
                          f"{tuple(cfg.train_categories)} count too" if cfg.train_categories
                          else "")
            raise NoUsableRecordError(
                f"{cfg.max_unusable_in_a_row} training records in a row of {len(files)} "
                f"file(s) ({_some(files)}) yielded no sample (config.data."
                f"max_unusable_in_a_row). Chunks skipped so far: {counts}{categories}. "
                "Check the vocabulary against the captions (python -m vtlearn.data.inspect "
                "PATTERN --vocab VOCAB) and the clip settings against the videos' "
                "length.") from None

    def save(self, directory: str) -> None:
        """Writes the position (any filesystem, `vtlearn.fs`) into `directory`."""
        fs.makedirs(directory)
        tf.train.Checkpoint(iterator=self._iterator).write(fs.join(directory, "iterator"))
        fs.write_text(fs.join(directory, STREAM_FILE), json.dumps(
            {"start_index": self.start_index, "seed_offset": self.seed_offset}))

    def _restore(self, directory: str) -> None:
        tf.train.Checkpoint(iterator=self._iterator).read(
            fs.join(directory, "iterator")).assert_consumed()
        self.restored = True


def iterate_train(cfg: ml_collections.ConfigDict, batch_size: int, *,
                  process_index: int = 0, process_count: int = 1, start_index: int = 0,
                  seed_offset: int = 0, skips: SkipCounter | None = None,
                  resume_from: str | None = None) -> TrainStream:
    """The training batches of this process (see `TrainStream`).

    Args:
      resume_from: a directory `TrainStream.save` wrote: the stream continues
        from there without reading the records before it. When it is absent
        or does not restore (a changed pipeline), the stream starts at
        `start_index` instead, skipping what comes before it (logged).
      Others: as `build_train_dataset`.
    """
    skips = skips or SkipCounter()
    where = dict(process_index=process_index, process_count=process_count, skips=skips)
    if resume_from and fs.exists(fs.join(resume_from, STREAM_FILE)):
        saved = json.loads(fs.read_text(fs.join(resume_from, STREAM_FILE)))
        stream = TrainStream(cfg, batch_size, start_index=saved["start_index"],
                             seed_offset=saved["seed_offset"], **where)
        try:
            stream._restore(resume_from)
            logging.info("Data position restored from %s.", resume_from)
            return stream
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            logging.warning("The data position in %s does not restore (%s); skipping to "
                            "sample %d instead, which reads the records before it.",
                            resume_from, str(e).splitlines()[0][:200], start_index)
    elif resume_from:
        logging.warning("No saved data position in %s; skipping to sample %d, which reads "
                        "the records before it.", resume_from, start_index)
    return TrainStream(cfg, batch_size, start_index=start_index, seed_offset=seed_offset,
                       **where)


def _some(paths: Sequence[str], count: int = 3) -> str:
    """The first `count` paths, and how many more."""
    more = f", ... {len(paths) - count} more" if len(paths) > count else ""
    return ", ".join(paths[:count]) + more


def iterate_eval(cfg, batch_size: int, units: Units = Units(),
                 **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """NumPy batches of `build_eval_dataset`, the last one padded to `batch_size`."""
    files = list_files(kwargs.pop("files", None) or cfg.eval_files,
                       kwargs.get("process_index", 0), kwargs.get("process_count", 1))
    positions = ReadPositions(files)
    dataset = build_eval_dataset(cfg, batch_size, units, files=files, positions=positions,
                                 **kwargs)
    for batch in numpy_batches(dataset, cfg, positions):
        n = len(batch["valid"])
        if n < batch_size:
            batch = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:],
                                                    v.dtype)]) for k, v in batch.items()}
        yield batch
