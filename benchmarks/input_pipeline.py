"""Benchmark: training input pipeline throughput, selective decode vs decode-all.

Run: python benchmarks/input_pipeline.py [--quick] [--cache-dir /tmp/vtlearn_bench_lab]
(about 4 minutes, --quick 1 to 1.5, on 2 cores shared with other work)
     python benchmarks/input_pipeline.py --quick --chunk-lengths 8,16,32
(record layouts: the pipeline at the paper setting on chunks of each length,
with the bytes a sample reads and the captions that still hold a clip)

Measures `vtlearn.data.pipeline.build_train_dataset` ("clip" sampler, random
crop, flip, batching, consumed as NumPy) in steady state after a warm-up, for
two settings:

* local: the synthetic lab's "local" preset (48x48 frames at 10 fps) with the
  data settings of `configs/milnce_s3d.py:local` (8 frames at 5 fps, 32x32
  crops, batch 32);
* paper: `configs/milnce_s3d.py` (32 frames at 10 fps, 200x200 crops) on
  synthetic 60-s videos stored as 256x340 JPEGs (quality 90) at 10 fps with a
  caption about every 4 s, in 32-s chunk records. Frames are a panning,
  multi-scale noise texture with moving shapes, so each JPEG is ~20 kB as a
  real 256-px frame is (a flat colour would be ~2 kB and decode far faster).

Two peers read the same records with the same graph (parse, caption
sampling, crop window, flip, batching) but another video step:

* DMVR-style, the strongest a user would pick: DMVR's order, which decodes
  the clip's sampled frames whole and then crops them (the pipeline decodes
  only the crop window of those frames, `decode_and_crop_jpeg`);
* decode-all, a naive reader: decodes every JPEG of the chunk, then gathers
  the clip's frames and crops them.

All readers use the same seeds, so they yield the same batches: the
benchmark checks that, then times them in alternating rounds (each on a
fresh iterator, warmed up); the ratios against DMVR-style are the numbers to
read.

Reported per reader: clips/s (wall), that per core of this machine, clips per
CPU-second of this process (what one fully used core delivers; robust to other
processes on a shared machine), bytes of record read per sample (a sample
reads one chunk record: file bytes / records) and frames (and JPEG bytes)
decoded per sample. The issue's target is >= 15 clips/s per core at the paper
setting, so a TPU host's input does not starve the accelerator.

The default run then times, for the paper setting, the pipeline cut after
each of its stages (read, parse, decode, flip; plus a float32 conversion
the pipeline no longer does, to show what uint8 output saves; see
`stage_datasets`) to show where the time goes; `--quick` skips that. The
records are generated once under --cache-dir (the first run takes about a
minute longer).
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import ml_collections
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from vtlearn import cli
from vtlearn.config_defaults import load_config
from vtlearn.data import clips, pipeline, records
from vtlearn.data import schema as S
from vtlearn.data.sources import resolve_data
from vtlearn.data.text import Vocabulary

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "milnce_s3d.py"
SELECTIVE, DMVR, DECODE_ALL = "chunked selective", "DMVR-style (peer)", "decode-all (peer)"
PEERS = (DMVR, DECODE_ALL)
TARGET_PER_CORE = 15.0  # clips/s per core at the paper setting (the aim)
STAGES = {  # the cuts of `stage_datasets`, each adding to the one before but the last
    "read": "read shuffled chunk records",
    "parse": "+ parse, tokenize captions",
    "decode": "+ decode_and_crop_jpeg of T frames -> uint8",
    "flip": "+ random flip (uint8)",
    "float": "+ float32 in [0, 1] (what uint8 output saves)",
    "pipeline": "decode + flip as pipeline.py does (vs parse)",
}

# Paper-setting records: 256-px short side at 10 fps, 32-s chunks.
PAPER_HEIGHT, PAPER_WIDTH, PAPER_FPS = 256, 340, 10.0
PAPER_SECONDS, PAPER_VIDEOS, PAPER_SHARDS = 60.0, 6, 3
PAPER_QUALITY = 90
_WORDS = ("now cut the onion into small pieces add some salt and pepper then stir "
          "it well put pan on medium heat pour oil wait until hot flip over take "
          "out let cool serve with fresh herbs").split()


# Records ----------------------------------------------------------------------


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: smooth noise at three scales + gradient + grain."""
    out = np.zeros((height, width, 3), np.float32)
    for scale, amplitude in ((64, 90.0), (16, 40.0), (4, 18.0)):
        rows, cols = height // scale + 2, width // scale + 2
        coarse = Image.fromarray(rng.integers(0, 256, (rows, cols, 3), np.uint8))
        fine = coarse.resize((cols * scale, rows * scale), Image.BICUBIC)
        out += (np.asarray(fine, np.float32)[:height, :width] / 127.5 - 1) * amplitude
    out += np.linspace(-30, 30, height, dtype=np.float32)[:, None, None] * np.array(
        [1.0, 0.5, -0.5], np.float32)
    out += rng.normal(0, 3, out.shape).astype(np.float32)
    return np.clip(out + 128, 0, 255).astype(np.uint8)


def _paper_video(index: int) -> S.Video:
    """A 60-s video of 256x340 JPEG frames with ~4-s captions every ~4 s."""
    rng = np.random.default_rng(index)
    margin = 96
    base = _texture(rng, PAPER_HEIGHT + margin, PAPER_WIDTH + margin)
    shapes = [(rng.uniform(0, 2 * np.pi, 2), rng.integers(0, 256, 3), int(rng.integers(15, 40)))
              for _ in range(4)]
    frames = []
    for f in range(int(PAPER_SECONDS * PAPER_FPS)):
        t = f / PAPER_FPS
        dy = int(margin / 2 * (1 + np.sin(0.3 * t + index)))
        dx = int(margin / 2 * (1 + np.cos(0.2 * t + index)))
        image = Image.fromarray(base[dy:dy + PAPER_HEIGHT, dx:dx + PAPER_WIDTH])
        draw = ImageDraw.Draw(image)
        for (phase_y, phase_x), colour, radius in shapes:
            cy = PAPER_HEIGHT / 2 * (1 + 0.7 * np.sin(0.9 * t + phase_y))
            cx = PAPER_WIDTH / 2 * (1 + 0.7 * np.cos(0.7 * t + phase_x))
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                         fill=tuple(int(c) for c in colour))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=PAPER_QUALITY)
        frames.append(buffer.getvalue())
    # A caption every 3-5 s at random, not on a grid that chunk edges would miss.
    starts = np.cumsum(rng.uniform(3.0, 5.0, int(PAPER_SECONDS))) - rng.uniform(2.0, 3.0)
    starts = starts[starts < PAPER_SECONDS - 4.0]
    ends = starts + rng.uniform(2.5, 3.8, len(starts))
    texts = [" ".join(rng.choice(_WORDS, rng.integers(4, 9))) for _ in starts]
    return S.Video(f"paper{index:03d}", PAPER_SECONDS, S.Captions(texts, starts, ends),
                   frames=frames, frame_rate=PAPER_FPS)


def paper_records(cache_dir: Path, chunk_seconds: float = S.DEFAULT_CHUNK_SECONDS
                  ) -> tuple[str, str]:
    """Writes (once) the paper-setting shards; returns (train glob, vocab path)."""
    root = cache_dir / f"paper-v2-{PAPER_HEIGHT}x{PAPER_WIDTH}-q{PAPER_QUALITY}-{PAPER_VIDEOS}v"
    if chunk_seconds != S.DEFAULT_CHUNK_SECONDS:
        root = root.with_name(f"{root.name}-{chunk_seconds:g}s")
    vocab_path = root / "vocab.txt"
    if not vocab_path.exists():
        root.mkdir(parents=True, exist_ok=True)
        print(f"writing {PAPER_VIDEOS} synthetic 256-px videos to {root} ...", flush=True)
        per_shard = PAPER_VIDEOS // PAPER_SHARDS
        for shard, path in enumerate(records.shard_paths(root / "train", PAPER_SHARDS)):
            records.write_tfrecord(path, [
                example for i in range(shard * per_shard, (shard + 1) * per_shard)
                for example in records.video_to_examples(_paper_video(i), chunk_seconds)])
        Vocabulary(sorted(set(_WORDS))).save(vocab_path)  # last: marks the set complete
    return str(root / "train-*.tfrecord"), str(vocab_path)


def local_data(cache_dir: Path) -> ml_collections.ConfigDict:
    """Data config of `configs/milnce_s3d.py:local`, its lab generated into `cache_dir`."""
    config = load_config(f"{CONFIG}:local")
    config.data.lab_dir = str(cache_dir)
    config.data.flip = True  # lab runs do not flip; measure the paper's augmentation
    return resolve_data(config).data


def paper_data(cache_dir: Path, chunk_seconds: float = S.DEFAULT_CHUNK_SECONDS
               ) -> ml_collections.ConfigDict:
    """Data config of `configs/milnce_s3d.py` on the paper-setting records.

    The shuffle buffer is cut to 16 records: a buffered record is a whole
    32-s chunk (~7 MB here), so the default 1024 would hold ~7 GB.
    """
    data = load_config(str(CONFIG)).data
    data.train_files, data.vocab_path = paper_records(cache_dir, chunk_seconds)
    data.shuffle_buffer = 16
    return data


def usable_caption_fraction(cfg: ml_collections.ConfigDict) -> float:
    """Usable (caption, chunk) pairs (`clips.usable_captions`) per caption of the
    videos: what shorter chunks cost in captions cut by a chunk's edge."""
    table = Vocabulary.load(cfg.vocab_path).tf_lookup_table()
    parse = pipeline._parse_fn(cfg)
    usable = captions = 0
    for path in pipeline.list_files(cfg.train_files):
        for raw in tf.data.TFRecordDataset(path):
            ex = parse(raw)
            text_ids = Vocabulary.tf_encode(table, ex[S.CAPTION], cfg.max_words)
            usable += int(tf.reduce_sum(tf.cast(clips.usable_captions(ex, text_ids, cfg),
                                                tf.int32)))
            if float(ex[S.CHUNK_START]) == 0.0:  # each video's captions, once
                captions += int(tf.size(ex[S.CAPTION]))
    return usable / captions


def chunk_length_rows(cache_dir: Path, lengths: list[float], rounds: int, warmup_s: float,
                      seconds: float) -> list[str]:
    """The pipeline at the paper setting on records of each chunk length: clips/s,
    bytes read per sample and the captions still usable."""
    rows = []
    for length in lengths:
        cfg = paper_data(cache_dir, length)
        stats = record_stats(cfg.train_files)
        totals, _ = time_readers({SELECTIVE: pipeline.build_train_dataset(cfg, 8)}, 8, rounds,
                                 warmup_s, seconds)
        t = totals[SELECTIVE]
        rows.append(f"  {length:5g} s {t.clips_per_s:8.1f} {t.clips_per_cpu_s:11.1f}"
                    f" {stats.bytes_per_record / 1e3:9.1f} {usable_caption_fraction(cfg):8.0%}")
    return rows


@dataclasses.dataclass(frozen=True)
class RecordStats:
    """What one chunk record holds, averaged over the training files."""

    records: int
    bytes_per_record: float
    frames_per_record: float
    bytes_per_frame: float  # JPEG bytes


def record_stats(pattern: str) -> RecordStats:
    """Counts records, file bytes, frames and JPEG bytes of `pattern`'s files."""
    files = pipeline.list_files(pattern)
    count = frames = jpeg_bytes = 0
    for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
        jpegs = tf.train.SequenceExample.FromString(serialized).feature_lists.feature_list[
            S.FRAMES].feature
        count += 1
        frames += len(jpegs)
        jpeg_bytes += sum(len(f.bytes_list.value[0]) for f in jpegs)
    file_bytes = sum(os.path.getsize(f) for f in files)
    return RecordStats(count, file_bytes / count, frames / count, jpeg_bytes / frames)


# Readers ------------------------------------------------------------------------


def decode_all_modalities(ex, lo, hi, clip_start, seed, cfg, train):
    """The peer's video step: decode every frame of the chunk, then gather and crop.

    Stands in for `clips.modalities` (video only) with the same crop
    window, flip and output: video uint8 [n, T, s, s, 3].
    """
    del lo, hi  # Only audio and features use the caption window.
    idx = clips._frame_indices(ex, clip_start, cfg)  # [n, T]
    crop = cfg.crop_size if train else cfg.eval_crop_size
    y, x = tf.unstack(clips._crop_window(ex[S.FRAMES][0], crop, seed, random=train)[:2])
    flip = (tf.random.stateless_uniform([], seed + 1) < 0.5) if (
        train and cfg.flip) else tf.constant(False)
    decoded = tf.map_fn(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), ex[S.FRAMES],
                        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    frames = tf.gather(decoded, tf.reshape(idx, [-1]))[:, y:y + crop, x:x + crop]
    if cfg.image_size:
        frames = tf.image.resize(frames, [cfg.image_size] * 2, antialias=True)
        frames = tf.cast(tf.clip_by_value(tf.round(frames), 0, 255), tf.uint8)
    frames = tf.cond(flip, lambda: tf.reverse(frames, [2]), lambda: frames)
    size = cfg.image_size or crop
    return {"video": tf.reshape(frames, tf.concat([tf.shape(idx), [size, size, 3]], 0))}


def dmvr_style_modalities(ex, lo, hi, clip_start, seed, cfg, train):
    """DMVR's video step: decode the sampled frames whole, then crop.

    DMVR (`dmvr.processors.decode_jpeg` after `sample_sequence`) decodes the
    clip's frames in full and crops them afterwards, where the pipeline
    decodes only the crop window (`decode_and_crop_jpeg`). Same crop window,
    flip and output as `clips.modalities` (video only).
    """
    del lo, hi
    idx = clips._frame_indices(ex, clip_start, cfg)  # [n, T]
    crop = cfg.crop_size if train else cfg.eval_crop_size
    y, x = tf.unstack(clips._crop_window(ex[S.FRAMES][0], crop, seed, random=train)[:2])
    flip = (tf.random.stateless_uniform([], seed + 1) < 0.5) if (
        train and cfg.flip) else tf.constant(False)
    frames = tf.map_fn(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3),
                       tf.gather(ex[S.FRAMES], tf.reshape(idx, [-1])),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    frames = frames[:, y:y + crop, x:x + crop]
    frames = tf.cond(flip, lambda: tf.reverse(frames, [2]), lambda: frames)
    return {"video": tf.reshape(frames, tf.concat([tf.shape(idx), [crop, crop, 3]], 0))}


def build_peer_dataset(cfg: ml_collections.ConfigDict, batch_size: int,
                       peer: str) -> tf.data.Dataset:
    """`pipeline.build_train_dataset` with a peer's video step (`PEERS`)."""
    if cfg.audio_seconds or cfg.features_2d or cfg.features_3d or cfg.image_size:
        raise ValueError("the peers read video only, without resizing")
    step = {DMVR: dmvr_style_modalities, DECODE_ALL: decode_all_modalities}[peer]
    with mock.patch.object(clips, "modalities", step):
        return pipeline.build_train_dataset(cfg, batch_size)  # traced here


@dataclasses.dataclass
class Throughput:
    """Clips consumed and the wall and process CPU seconds they took."""

    clips: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.wall_s

    @property
    def clips_per_cpu_s(self) -> float:
        return self.clips / self.cpu_s


def warm_up(batches: Iterator[dict[str, np.ndarray]], seconds: float) -> dict[str, np.ndarray]:
    """Consumes the first batch, then batches until `seconds` passed; returns the first."""
    start = time.perf_counter()
    first = next(batches)
    while time.perf_counter() - start < seconds:
        next(batches)
    return first


def timed_round(batches: Iterator[dict[str, np.ndarray]], batch_size: int, seconds: float,
                total: Throughput) -> None:
    """Consumes batches for `seconds` (at least one) and adds them to `total`."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    while count < 1 or time.perf_counter() - wall < seconds:
        next(batches)
        count += 1
    total.clips += count * batch_size
    total.wall_s += time.perf_counter() - wall
    total.cpu_s += time.process_time() - cpu


def check_same_batches(ours: dict[str, np.ndarray], peer: dict[str, np.ndarray]) -> float:
    """Asserts both readers yield the same batch; returns the largest pixel change (0-255).

    Pixels inside each crop must match exactly. On the crop's one-pixel
    border they may differ: decoding only the crop upsamples chroma there
    without the neighbours a full decode has.
    """
    for key in ("index", "text", "text_mask", "label"):
        np.testing.assert_array_equal(ours[key], peer[key], err_msg=key)
    inside = (..., slice(1, -1), slice(1, -1), slice(None))
    np.testing.assert_array_equal(ours["video"][inside], peer["video"][inside], err_msg="video")
    return float(np.max(np.abs(ours["video"].astype(np.int16) - peer["video"])))


def time_readers(readers: dict[str, tf.data.Dataset], batch_size: int, rounds: int,
                 warmup_s: float, seconds: float,
                 ) -> tuple[dict[str, Throughput], dict[str, dict[str, np.ndarray]]]:
    """Times readers in alternating rounds, each round on a fresh, warmed-up iterator.

    One iterator lives at a time: an idle one keeps filling its buffers in the
    background, and that work would be charged to the reader timed next.

    Returns:
      Throughput per reader and each reader's first batch.
    """
    totals = {name: Throughput() for name in readers}
    first = {}
    for _ in range(rounds):
        for name, dataset in readers.items():
            batches = dataset.as_numpy_iterator()
            first.setdefault(name, warm_up(batches, warmup_s))
            timed_round(batches, batch_size, seconds, totals[name])
            del batches  # stops its background work
    return totals, first


def compare_readers(cfg: ml_collections.ConfigDict, batch_size: int, rounds: int,
                    warmup_s: float, seconds: float) -> tuple[dict[str, Throughput], float]:
    """Times the pipeline against the peers on `cfg`'s training files.

    Returns:
      Throughput per reader (keys SELECTIVE and `PEERS`) and the largest
      pixel difference of their (otherwise identical) first batches.
    """
    totals, first = time_readers(
        {SELECTIVE: pipeline.build_train_dataset(cfg, batch_size),
         **{peer: build_peer_dataset(cfg, batch_size, peer) for peer in PEERS}},
        batch_size, rounds, warmup_s, seconds)
    return totals, max(check_same_batches(first[SELECTIVE], first[peer]) for peer in PEERS)


# Stage breakdown ------------------------------------------------------------------


def stage_datasets(cfg: ml_collections.ConfigDict, batch_size: int) -> dict[str, tf.data.Dataset]:
    """The training pipeline cut after each stage (`STAGES`), batched and prefetched.

    A clip starts at a uniformly random time of its chunk (the caption sampler
    is left out); "pipeline" runs the pipeline's own `_decode_frames` after
    "parse" in place of "decode", "flip" and "float".
    """
    files = pipeline.list_files(cfg.train_files)
    table = Vocabulary.load(cfg.vocab_path).tf_lookup_table()
    parse = pipeline._parse_fn(cfg)
    crop = cfg.crop_size

    def records_of():
        ds = tf.data.Dataset.from_tensor_slices(files).repeat()
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=len(files),
                           num_parallel_calls=tf.data.AUTOTUNE)
        return ds.shuffle(cfg.shuffle_buffer, seed=0).enumerate()

    def parsed(serialized):
        ex = parse(serialized)
        return ex, Vocabulary.tf_encode(table, ex[S.CAPTION], cfg.max_words)

    def clip(index, serialized, stage):
        ex, _ = parsed(serialized)
        seed = tf.stack([tf.constant(0, tf.int64), index])
        free = ex[S.CHUNK_END] - ex[S.CHUNK_START] - clips.clip_seconds(cfg)
        start = ex[S.CHUNK_START] + tf.random.stateless_uniform([1], seed, 0.0, free)
        jpegs = tf.gather(ex[S.FRAMES], clips._frame_indices(ex, start, cfg)[0])
        window = clips._crop_window(jpegs[0], crop, seed, random=True)
        flip = tf.random.stateless_uniform([], seed + 1) < 0.5
        if stage == "pipeline":
            return clips._decode_frames(jpegs, window, crop, cfg.image_size, flip)
        video = tf.map_fn(lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, window, channels=3),
                          jpegs, fn_output_signature=tf.TensorSpec([crop, crop, 3], tf.uint8))
        if stage in ("flip", "float"):
            video = tf.cond(flip, lambda: tf.reverse(video, [2]), lambda: video)
        if stage == "float":
            video = tf.image.convert_image_dtype(video, tf.float32)
        return video

    def batched(ds):
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE)
    cuts = {"read": batched(records_of().map(lambda _, s: tf.strings.length(s))),
            "parse": batched(records_of().map(lambda _, s: parsed(s)[1], **parallel))}
    for stage in ("decode", "flip", "float", "pipeline"):
        cuts[stage] = batched(records_of().map(
            lambda i, s, stage=stage: clip(i, s, stage), **parallel))
    return cuts


# Report ---------------------------------------------------------------------------


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def frames_decoded(cfg: ml_collections.ConfigDict) -> int:
    """Frames the selective reader decodes per sample: T, or n*T ("sequence")."""
    return cfg.num_frames * (cfg.num_pairs if cfg.sampler == "sequence" else 1)


def setting_rows(name: str, cfg: ml_collections.ConfigDict, stats: RecordStats,
                 totals: dict[str, Throughput], difference: float) -> list[str]:
    """Table rows of one setting and its ratio line."""
    rows = []
    decoded = {SELECTIVE: frames_decoded(cfg), DMVR: frames_decoded(cfg),
               DECODE_ALL: stats.frames_per_record}
    for reader, frames in decoded.items():
        t = totals[reader]
        rows.append(
            f"{name:<6} {reader:<18} {t.clips_per_s:8.1f} {t.clips_per_s / cores():8.1f}"
            f" {t.clips_per_cpu_s:11.1f} {t.cpu_s / t.wall_s / cores():7.0%}"
            f" {stats.bytes_per_record / 1e3:9.1f} {frames:8.1f}"
            f" {frames * stats.bytes_per_frame / 1e3:9.1f}")
    ours = totals[SELECTIVE]
    for peer in PEERS:
        rows.append(f"{'':<6} ratio selective / {peer.split(' (')[0]}: "
                    f"{ours.clips_per_s / totals[peer].clips_per_s:.2f}x clips/s, "
                    f"{ours.clips_per_cpu_s / totals[peer].clips_per_cpu_s:.2f}x clips/CPU-s")
    rows.append(f"{'':<6} (same batches; crop-border pixels differ by <= {difference:.0f}/255)")
    return rows


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one short round, no stage breakdown (~1 min)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/vtlearn_bench_lab"))
    parser.add_argument("--chunk-lengths", default="",
                        help="only compare records of these chunk lengths (s), e.g. 8,16,32")
    args = parser.parse_args()
    rounds, warmup_s, seconds = (1, 2.0, 3.0) if args.quick else (2, 3.0, 8.0)
    if args.chunk_lengths:
        lengths = [float(x) for x in args.chunk_lengths.split(",")]
        rows = chunk_length_rows(args.cache_dir, lengths, rounds, warmup_s, seconds)
        print(f"paper setting, chunk records of each length ({cores()} cores):\n"
              f"  {'chunk':>7} {'clips/s':>8} {'clips/CPU-s':>11} {'kB read':>9} {'usable':>8}")
        print("\n".join(rows))
        print("usable: (caption, chunk) pairs whose window holds a clip, per caption")
        return

    settings = {"local": (local_data(args.cache_dir), 32),
                "paper": (paper_data(args.cache_dir), 8)}
    print(f"tensorflow {tf.__version__}, {cores()} cores, load average {os.getloadavg()[0]:.1f};"
          f" {rounds} round(s) of {seconds:g} s per reader after {warmup_s:g} s warm-up")
    lines, paper = [], None
    for name, (cfg, batch_size) in settings.items():
        stats = record_stats(cfg.train_files)
        print(f"{name}: {stats.records} records of {stats.frames_per_record:.0f} frames"
              f" ({stats.bytes_per_frame / 1e3:.1f} kB/JPEG); clips of {cfg.num_frames} frames"
              f" at {cfg.fps:g} fps, {cfg.crop_size}x{cfg.crop_size} crops, batch {batch_size}",
              flush=True)
        totals, difference = compare_readers(cfg, batch_size, rounds, warmup_s, seconds)
        lines += setting_rows(name, cfg, stats, totals, difference)
        if name == "paper":
            paper = totals[SELECTIVE]

    print(f"\n{'':<6} {'reader':<18} {'clips/s':>8} {'per core':>8} {'clips/CPU-s':>11}"
          f" {'CPU use':>7} {'kB read':>9} {'decoded':>8} {'kB JPEG':>9}")
    print("\n".join(lines))
    per_core = paper.clips_per_s / cores()
    verdict = ("met" if per_core >= TARGET_PER_CORE else
               "met per CPU-second only: this process got part of the machine"
               if paper.clips_per_cpu_s >= TARGET_PER_CORE else "MISSED")
    print(f"\ntarget >= {TARGET_PER_CORE:g} clips/s per core at the paper setting: {per_core:.1f}"
          f" per core (wall), {paper.clips_per_cpu_s:.1f} per CPU-second -> {verdict}")
    if args.quick:
        return

    cfg, batch_size = settings["paper"]
    totals, _ = time_readers(stage_datasets(cfg, batch_size), batch_size, 1, warmup_s, seconds)
    print(f"\npaper setting, the pipeline cut after each stage:\n"
          f"  {'cut':<9} {'clips/CPU-s':>11} {'CPU ms/clip':>11} {'added':>6}")
    previous = 0.0
    for stage, t in totals.items():
        ms = 1e3 / t.clips_per_cpu_s
        added = f"{ms - previous:+6.1f}" if stage != "pipeline" else ""
        print(f"  {stage:<9} {t.clips_per_cpu_s:11.1f} {ms:11.1f} {added:>6}  {STAGES[stage]}")
        previous = ms


if __name__ == "__main__":
    main()
