"""Converts real narrated-video data into vtlearn chunk records (TFRecords).

Three converters share one sharding / resume / summary machinery (`convert`):

* `videos`: video files + captions -> JPEG frames at `--fps` (short side
  `--short_side`) and a mono waveform at `--sample_rate` (MIL-NCE, VT-TWINS;
  MCN's audio).
* `features`: pre-extracted per-video feature arrays (+ optional waveforms) +
  captions -> `FEATURES/2d|3d/floats` (MCN, Hessel et al.).
* `youtube8m`: YouTube-8M frame-level feature records + ASR captions
  (Hessel et al.; `vtlearn.data.youtube8m`).

and `vocab` writes the vocabulary of converted records' captions
(`build_vocabulary`), which training reads as `data.vocab_path`.

Converting HowTo100M (captions: the released `raw_caption.json`, which takes
a few GB of memory in the main process, or the per-video caption CSVs
unzipped into a directory; feature paths and array names are examples)::

    python -m vtlearn.data.convert videos \\
        --video_dir /data/howto100m/videos \\
        --captions /data/howto100m/raw_caption.json \\
        --out_prefix /data/records/howto100m/frames --num_shards 8192 \\
        --fps 10 --short_side 256 --sample_rate 16000 --workers "$(nproc)"

    python -m vtlearn.data.convert features \\
        --features_dir /data/howto100m/features \\
        --feature_keys 2d=resnet,3d=resnext --feature_rate 1 \\
        --waveform_dir /data/howto100m/audio16k --waveform_rate 16000 \\
        --captions /data/howto100m/captions_csv \\
        --out_prefix /data/records/howto100m/features --num_shards 1024 \\
        --workers "$(nproc)"

Rerun the same command after an interruption: finished shards are kept.

At scale, on Apache Beam (`pip install 'vtlearn[beam]'`): `--runner` runs
the same shard tasks as a Beam pipeline (`_run_on_beam`) instead of
`--workers` local processes; Beam's own options follow a lone `--`. The
shards, sidecars, summary (failed and warned videos included) and resume are
the local converter's; inputs and outputs may be on any filesystem
(`vtlearn.fs`, e.g. gs://), and progress is in Beam's counters
("vtlearn.convert": videos, failed, records, shards). `DirectRunner` runs
here (tested); on Dataflow (not run by the tests), from a checkout, with
PyAV installed on the workers by the requirements file::

    python -m vtlearn.data.convert videos \
        --video_dir gs://BUCKET/howto100m/videos \
        --captions gs://BUCKET/howto100m/raw_caption.json \
        --out_prefix gs://BUCKET/records/howto100m/frames --num_shards 8192 \
        --fps 10 --short_side 256 --sample_rate 16000 \
        --runner DataflowRunner -- \
        --project=PROJECT --region=REGION --temp_location=gs://BUCKET/tmp \
        --setup_file=./setup.py --requirements_file=launch/beam_requirements.txt \
        --machine_type=n2-standard-8 --max_num_workers=500

One element is one shard (~146 videos of HowTo100M at 8192 shards, about
2.4 CPU-hours at the costs below), spread over the workers by a reshuffle.
Flink and Spark take `--runner FlinkRunner -- --flink_master=HOST:8081
--environment_type=LOOPBACK` and `--runner SparkRunner --
--spark_master_url=spark://HOST:7077`.

Inputs. Video ids are file stems: `<video_dir>/**/<id>.mp4|.mkv|.webm|...`;
`<features_dir>/<id>.npy` (float [N, D], the 2d stream) or `<id>.npz` (arrays
named by `--feature_keys`); `--features_3d_dir` adds `<id>.npy` 3d features
(streams one step apart in length are cut to the shorter, further apart
fail); `--waveform_dir` holds `<id>.npy` mono waveforms [S] (float in [-1, 1]
or int16). `--segments` adds ground-truth steps (CSV
`video_id,label,start,end`), `--durations` feature-set durations (CSV
`video_id,duration`; default N / feature_rate). Formats: `captions`.

Decoding (`VideoFileLoader`): output frame k shows time k / fps and is the
decoded frame whose presentation time (pts * time_base, from the container's
start) is nearest to it, so variable frame rates are handled; ceil(duration *
fps) frames. Frames are scaled by libswscale (area averaging, in the same pass
as the YUV -> RGB conversion) so the short side is `--short_side` (up or down:
sizes stay uniform), optionally centre-cropped to a long/short ratio of
`--max_aspect`, and JPEG-encoded. The first audio stream is resampled to mono
float32 at `--sample_rate` (`av.AudioResampler`) and placed in video time. The
duration is the end of the last decoded frame, capped by the declared
stream/container duration; audio is zero-padded or cut to it.

Policies. A video that fails to open or decode (or a feature file that fails
to load) is logged and listed under `failed` with the reason; packets that
fail to decode are skipped, and a file that decodes to more than 1 s less than
its declared duration (a truncated download) is converted and listed under
`warnings`. Failed videos are not retried by a rerun; delete their shards'
`.done.json` to retry. When audio is requested (`--sample_rate` > 0, or
`--waveform_dir`), a video without audio is converted, listed under
`no_audio` and warned about (naming its file and the reason): one without an
audio stream, whose audio stream decodes to no samples, or without a waveform
file gets no waveform (its records have `WAVEFORM/sample_rate` 0 and an empty
waveform); one whose audio (or waveform file) is all zeros keeps its zeros.
Training that uses audio samples no clips from such chunks. A video without
captions is kept by default (feature and probe evaluations use them) and
counted; `--skip_uncaptioned` leaves them out. A caption (or segment) id
without an input file is listed under `missing`. A malformed caption file
stops the run before any work, with an error naming the file and video or
line.

Shards. Videos are sorted by id and dealt round robin into
`<prefix>-0000i-of-0000N.tfrecord`, each holding its videos' chunks in id and
time order, so the content does not depend on `--workers`. One task per shard
runs in a pool of `--workers` processes (started with "spawn", as TensorFlow is
not fork-safe, so each worker pays one TensorFlow import, ~10 s). A shard is
written to `.tmp` and renamed, then its `.done.json` sidecar (ids, options,
a digest of its inputs, counts) is written; a rerun skips shards that have
both and whose sidecar matches the planned ids, options and inputs (file
paths, sizes and modification times, captions and segments:
`sources_digest`), and redoes the rest, so corrected captions or a replaced
video redo their shards. A crash loses at most the shards in flight (their
`.tmp` files). Workers end with the converter, even when it is killed with
SIGKILL. A decoder that kills its process (rather than raising) stops the
run; a rerun resumes. Inputs, annotations and the output prefix may be on
any filesystem (`vtlearn.fs`); a remote input is copied to a local temporary
file to be decoded.

Summary. At the end, printed and written to `<prefix>.summary.json`::

    {"out_prefix": str, "num_shards": N, "options": {...},
     "counts": {"videos", "converted", "failed", "uncaptioned",
                "skipped_uncaptioned", "missing", "warned", "no_audio",
                "shards_written", "shards_skipped_done", "records",
                "records_written", "bytes"},
     "seconds": float,
     "failed": {video_id: reason}, "warnings": {video_id: [message]},
     "no_audio": [video_id], "uncaptioned": [video_id], "missing": [video_id]}

`videos` counts input files; `records` and `bytes` cover all shards,
`records_written` and `seconds` this run. `uncaptioned` may overlap `failed`.
`no_audio` (converted videos without the requested audio, see Policies) are
also in `warnings`, so counted in `warned`; shards finished by a converter
older than this count contribute none to it.

Per-video costs, measured on a 640x360 30 fps H.264 + AAC source with
textured moving content (one process, --fps 10 --short_side 256, quality 90):
about 0.15 CPU-seconds per second of video (half decoding every source frame,
most of the rest scaling and JPEG-encoding the output frames, ~2 % building
records), i.e. ~20k CPU-hours for HowTo100M's 136k hours. Output: one JPEG per
output frame (70 kB for that source; natural footage is usually smaller:
check `bytes` in the summary of a sample) plus 64 kB per second of audio.
Memory per worker: about twice one video's output. Feature conversion is
I/O-bound (N x D x 4 bytes per stream).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import pickle
import posixpath
import queue as queue_lib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from vtlearn import cli, fs
from vtlearn.data import captions as captions_lib
from vtlearn.data import records
from vtlearn.data import schema
from vtlearn.data.inspect import video_captions
from vtlearn.data.text import Vocabulary

if TYPE_CHECKING:
    import av


def pyav():
    """The `av` module (PyAV), imported when video is decoded or encoded: feature
    conversions and feature-run evaluations do not need it."""
    try:
        import av
    except ModuleNotFoundError:
        raise ModuleNotFoundError("decoding or writing video files needs PyAV: "
                                  "pip install 'vtlearn[video]'") from None
    return av


logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv",
                    ".mpg", ".mpeg")
# Decoded content this much shorter than the declared duration (or waveform /
# feature lengths this far from the duration) is reported as a warning.
TOLERANCE_SECONDS = 1.0
FEATURE_STREAMS = ("2d", "3d")


@dataclasses.dataclass(frozen=True)
class SourceVideo:
    """One video to convert.

    Attributes:
        video_id: identifier (the input file stem).
        inputs: role -> file path: "video" for video files; "2d", "3d" and
            "waveform" for feature sets.
        captions: its caption track (empty if it has none).
        segments: optional ground-truth steps.
        duration: optional known duration, seconds.
        category, category_name: optional class or task (-1: unknown).
    """

    video_id: str
    inputs: Mapping[str, str]
    captions: schema.Captions
    segments: schema.Segments | None = None
    duration: float | None = None
    category: int = -1
    category_name: str = ""


# A loader turns a SourceVideo into a schema.Video plus warning messages; it
# must be a picklable dataclass whose fields are the conversion options.
Loader = Callable[[SourceVideo], tuple[schema.Video, list[str]]]


# Video files -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoFileLoader:
    """Decodes a video file into JPEG frames and a mono waveform.

    Attributes:
        fps: output frame rate.
        short_side: output short side, pixels.
        max_aspect: if set, centre-crop the resized frames to a long/short
            side ratio of at most this (>= 1).
        jpeg_quality: JPEG quality, 1-95.
        sample_rate: output audio rate, Hz; 0 drops audio.
    """

    fps: float = 10.0
    short_side: int = 256
    max_aspect: float | None = None
    jpeg_quality: int = 90
    sample_rate: int = 16000

    def __post_init__(self):
        if self.fps <= 0 or self.short_side < 1 or self.sample_rate < 0:
            raise ValueError(f"fps and short_side must be positive and "
                             f"sample_rate >= 0: {self}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95]: {self}")
        if self.max_aspect is not None and self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1: {self}")

    def __call__(self, source: SourceVideo) -> tuple[schema.Video, list[str]]:
        warnings = []
        av = pyav()
        with _local_input(source.inputs["video"]) as path, av.open(path) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            video_stream = container.streams.video[0]
            streams = [video_stream]
            audio = None
            if self.sample_rate and container.streams.audio:
                streams.append(container.streams.audio[0])
                audio = _AudioTrack(self.sample_rate)
            origin = (container.start_time or 0) / av.time_base
            rate = video_stream.average_rate or video_stream.guessed_rate
            frames = _NearestFrames(self.fps, self._render,
                                    1 / float(rate) if rate else 0.0)
            bad_packets = 0
            for packet in container.demux(*streams):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    bad_packets += 1
                    continue
                for frame in decoded:
                    if packet.stream is video_stream:
                        frames.add(frame, origin)
                    else:
                        audio.add(frame, origin)
            declared = _declared_duration(container, video_stream, origin)
        if frames.end is None:
            raise ValueError("no decodable video frames")
        duration = frames.end if declared is None else min(declared, frames.end)
        if bad_packets:
            warnings.append(f"skipped {bad_packets} undecodable packets")
        if frames.dropped:
            warnings.append(f"dropped {frames.dropped} frames without increasing "
                            f"timestamps")
        if declared is not None and declared - frames.end > TOLERANCE_SECONDS:
            warnings.append(f"decoded {frames.end:.2f} s of the declared "
                            f"{declared:.2f} s (truncated file?)")
        waveform = None
        if self.sample_rate:
            path = source.inputs["video"]
            if audio is None:
                warnings.append(f"{path}: no audio stream; converted without "
                                f"audio (sample_rate 0)")
            elif audio.start is None:
                warnings.append(f"{path}: the audio stream decoded to no samples; "
                                f"converted without audio (sample_rate 0)")
            else:
                waveform = audio.waveform(duration)
                if not np.any(waveform):
                    warnings.append(f"{path}: the audio is all zeros (silent)")
        return schema.Video(
            video_id=source.video_id, duration=duration, captions=source.captions,
            frames=frames.jpegs(duration), frame_rate=self.fps,
            waveform=waveform, sample_rate=self.sample_rate,
            segments=source.segments, category=source.category,
            category_name=source.category_name), warnings

    def _render(self, frame: av.VideoFrame) -> bytes:
        width, height = resized_size((frame.width, frame.height), self.short_side)
        rgb = frame.reformat(width, height, "rgb24", interpolation="AREA").to_ndarray()
        if self.max_aspect is not None:
            left, top, right, bottom = center_crop_box((width, height),
                                                       self.max_aspect)
            rgb = rgb[top:bottom, left:right]
        return records.encode_jpeg(rgb, self.jpeg_quality)


@contextlib.contextmanager
def _local_input(path: str) -> Iterator[str]:
    """`fs.local_copy`; an error naming the copy names `path` instead."""
    with fs.local_copy(path) as local:
        try:
            yield local
        except Exception as e:
            if local != path:
                e.args = tuple(a.replace(local, path) if isinstance(a, str) else a
                               for a in e.args)
                if getattr(e, "filename", None) == local:
                    e.filename = path
            raise


def resized_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the short side is `short_side`."""
    width, height = size
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def center_crop_box(size: tuple[int, int],
                    max_aspect: float) -> tuple[int, int, int, int]:
    """The centred (left, top, right, bottom) box with long/short <= max_aspect."""
    width, height = size
    crop_w = min(width, round(height * max_aspect))
    crop_h = min(height, round(width * max_aspect))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


class _NearestFrames:
    """Picks, for each output time k / fps, the decoded frame nearest to it.

    Frames arrive in presentation order; the kept frame `prev` is emitted for
    every target time up to the midpoint between it and the next frame. Only
    emitted frames are rendered, each once.

    Args:
        fps: output frame rate.
        render: frame -> JPEG bytes.
        frame_seconds: display time of a frame that does not carry its own
            duration (1 / the stream's frame rate).
    """

    def __init__(self, fps: float, render: Callable[[av.VideoFrame], bytes],
                 frame_seconds: float):
        self._fps = fps
        self._render = render
        self._frame_seconds = frame_seconds
        self._picked: list[bytes] = []
        self._prev: tuple[float, av.VideoFrame] | None = None
        self._prev_jpeg: bytes | None = None
        self.end: float | None = None  # end time of the last frame, seconds
        self.dropped = 0

    def add(self, frame: av.VideoFrame, origin: float) -> None:
        """Takes the next decoded frame; `origin` is video time 0 in seconds."""
        if frame.pts is None:
            self.dropped += 1
            return
        t = float(frame.time) - origin
        if self._prev is not None:
            if t <= self._prev[0]:
                self.dropped += 1
                return
            self._emit_until((self._prev[0] + t) / 2)
        self._prev, self._prev_jpeg = (t, frame), None
        self.end = t + (float(frame.duration * frame.time_base) if frame.duration
                        else self._frame_seconds)

    def jpegs(self, duration: float) -> list[bytes]:
        """The frames at times k / fps for k < duration * fps, as JPEG bytes."""
        count = math.ceil(duration * self._fps - 1e-6)
        self._emit_until(math.inf, count)
        return self._picked[:count]

    def _emit_until(self, t_max: float, limit: float = math.inf) -> None:
        while len(self._picked) / self._fps <= t_max and len(self._picked) < limit:
            if self._prev_jpeg is None:
                self._prev_jpeg = self._render(self._prev[1])
            self._picked.append(self._prev_jpeg)


class _AudioTrack:
    """Collects an audio stream as mono float32 at `rate`, in video time."""

    def __init__(self, rate: int):
        self._rate = rate
        self._resampler = pyav().AudioResampler(format="flt", layout="mono", rate=rate)
        self._chunks: list[np.ndarray] = []
        self.start: float | None = None  # video time of the first sample

    def add(self, frame: av.AudioFrame, origin: float) -> None:
        """Takes the next decoded frame; `origin` is video time 0 in seconds."""
        if self.start is None:
            self.start = float(frame.time) - origin if frame.pts is not None else 0.0
        self._chunks.extend(f.to_ndarray().reshape(-1)
                            for f in self._resampler.resample(frame))

    def waveform(self, duration: float) -> np.ndarray:
        """float32 [round(duration * rate)] in [-1, 1], zeros where no audio."""
        self._chunks.extend(f.to_ndarray().reshape(-1)
                            for f in self._resampler.resample(None))
        samples = np.concatenate([np.zeros(0, np.float32), *self._chunks])
        offset = round((self.start or 0.0) * self._rate)
        if offset > 0:
            samples = np.concatenate([np.zeros(offset, np.float32), samples])
        else:
            samples = samples[-offset:]
        return np.clip(_fit_length(samples, round(duration * self._rate)), -1, 1)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """`x` [S] cut or zero-padded to [n]."""
    return np.pad(x[:n], (0, max(0, n - len(x))))


def _declared_duration(container, stream, origin: float) -> float | None:
    """End of the video stream in video time, else the container's duration."""
    if stream.duration is not None:
        start = (float(stream.start_time * stream.time_base) - origin
                 if stream.start_time is not None else 0.0)
        return start + float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / pyav().time_base
    return None


# Feature arrays ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureLoader:
    """Loads per-video feature arrays (and optionally a waveform).

    Attributes:
        streams: the feature streams to load, a subset of ("2d", "3d"); each
            is read from `source.inputs[stream]`.
        npz_keys: stream -> array name, for inputs that are `.npz` files.
        feature_rate: feature vectors per second.
        waveform_rate: Hz of `source.inputs["waveform"]`; 0: no audio.
    """

    streams: tuple[str, ...] = ("2d",)
    npz_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    feature_rate: float = 1.0
    waveform_rate: float = 0.0

    def __post_init__(self):
        if not self.streams or set(self.streams) - set(FEATURE_STREAMS):
            raise ValueError(f"streams must be a non-empty subset of "
                             f"{FEATURE_STREAMS}: {self}")
        if self.feature_rate <= 0 or self.waveform_rate < 0:
            raise ValueError(f"feature_rate must be positive and waveform_rate "
                             f">= 0: {self}")

    def __call__(self, source: SourceVideo) -> tuple[schema.Video, list[str]]:
        feats, warnings = align_streams({s: self._features(source, s) for s in self.streams})
        n = len(next(iter(feats.values())))
        duration = source.duration or n / self.feature_rate
        if abs(n / self.feature_rate - duration) > TOLERANCE_SECONDS:
            warnings.append(f"{n} feature steps cover {n / self.feature_rate:.2f}"
                            f" s of {duration:.2f} s")
        waveform = None
        if self.waveform_rate and "waveform" not in source.inputs:
            warnings.append(f"no waveform file {source.video_id}.npy; converted "
                            f"without audio (sample_rate 0)")
        elif self.waveform_rate:
            path = source.inputs["waveform"]
            waveform = _load_waveform(path)
            if abs(len(waveform) / self.waveform_rate - duration) > TOLERANCE_SECONDS:
                warnings.append(f"waveform of {len(waveform) / self.waveform_rate:.2f}"
                                f" s cut or padded to {duration:.2f} s")
            waveform = _fit_length(waveform, round(duration * self.waveform_rate))
            if not np.any(waveform):
                warnings.append(f"{path}: the waveform is all zeros (silent)")
        return schema.Video(
            video_id=source.video_id, duration=duration, captions=source.captions,
            features_2d=feats.get("2d"), features_3d=feats.get("3d"),
            feature_rate=self.feature_rate, waveform=waveform,
            sample_rate=self.waveform_rate, segments=source.segments,
            category=source.category, category_name=source.category_name), warnings

    def _features(self, source: SourceVideo, stream: str) -> np.ndarray:
        """float32 [N, D] features of one stream."""
        if stream not in source.inputs:
            raise ValueError(f"no {stream} features file")
        path = source.inputs[stream]
        with _local_input(path) as local:
            if path.endswith(".npz"):
                key = self.npz_keys[stream]
                with np.load(local) as arrays:
                    if key not in arrays.files:
                        raise ValueError(f"{path} has no array {key!r}; it holds "
                                         f"{arrays.files}")
                    feats = arrays[key]
            else:
                feats = np.load(local)
        if feats.ndim != 2 or not len(feats):
            raise ValueError(f"{path}: {stream} features must be [N>0, D], got "
                             f"shape {feats.shape}")
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"{path}: {stream} features are not all finite")
        return feats.astype(np.float32)


def align_streams(feats: Mapping[str, np.ndarray], where: str = ""
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feature streams cut to a common length; one step apart is cut (and warned
    about), further apart raises ValueError (prefixed by `where`)."""
    lengths = {s: len(f) for s, f in feats.items()}
    n = min(lengths.values())
    if max(lengths.values()) - n > 1:
        raise ValueError(f"{where}feature streams differ in length: {lengths}")
    warnings = [f"cut feature streams {lengths} to {n} steps"] if (
        max(lengths.values()) != n) else []
    return {s: f[:n] for s, f in feats.items()}, warnings


def _load_waveform(path: str) -> np.ndarray:
    """float32 [S] in [-1, 1] from a `.npy` of float or int16 samples."""
    with _local_input(path) as local:
        wav = np.load(local)
    if wav.ndim != 1:
        raise ValueError(f"{path}: waveform must be mono [S], got shape "
                         f"{wav.shape}")
    if wav.dtype == np.int16:
        return wav.astype(np.float32) / 32768
    if not np.issubdtype(wav.dtype, np.floating) or not np.all(np.isfinite(wav)):
        raise ValueError(f"{path}: waveform must be finite floats or int16, got "
                         f"{wav.dtype}")
    return np.clip(wav.astype(np.float32), -1, 1)


# Sharded conversion ------------------------------------------------------------


def sources_digest(sources: Sequence[SourceVideo]) -> str:
    """16 hex digits over what `sources` are made of: each input file's path,
    size and modification time (a record inside a file, "path@offset", stats
    the file) and the captions, segments and category."""
    def stat(path: str) -> list:
        file = path if fs.exists(path) else path.rpartition("@")[0]
        return [path, fs.size(file), fs.modified_ns(file)]

    def array(x) -> list:
        return [] if x is None else np.asarray(x).tolist()

    blob = json.dumps([
        [s.video_id, {k: stat(p) for k, p in sorted(s.inputs.items())},
         list(s.captions.text), array(s.captions.start), array(s.captions.end),
         None if s.segments is None else [array(s.segments.label), array(s.segments.start),
                                          array(s.segments.end)],
         s.category, s.category_name] for s in sources], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    index: int
    path: str
    sources: tuple[SourceVideo, ...]


def convert(sources: Sequence[SourceVideo], loader: Loader, out_prefix: str | Path,
            num_shards: int, *, chunk_seconds: float = schema.DEFAULT_CHUNK_SECONDS,
            workers: int = 1, skip_uncaptioned: bool = False,
            missing: Sequence[str] = (), runner: str = "",
            beam_options: Sequence[str] = ()) -> dict:
    """Converts videos into sharded chunk records, resuming finished shards.

    Args:
        sources: the videos with input files.
        loader: turns a source into a `schema.Video` (`VideoFileLoader`,
            `FeatureLoader`); a picklable dataclass of conversion options.
        out_prefix: shards are `<out_prefix>-0000i-of-0000N.tfrecord`.
        num_shards: N.
        chunk_seconds: record length (`records.video_to_examples`).
        workers: processes; 1 converts in this process.
        skip_uncaptioned: leave out videos without captions.
        missing: annotated video ids without input files (for the summary).
        runner: an Apache Beam runner ("DirectRunner", "DataflowRunner",
            "FlinkRunner", "SparkRunner") to convert the shards on instead of
            `workers` local processes (`_run_on_beam`); the records are the same.
        beam_options: further Beam pipeline options, e.g. ["--project=P"].

    Returns:
        The summary (format in the module docstring), also written to
        `<out_prefix>.summary.json`.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be positive, got {num_shards}")
    if runner:
        _beam()  # before any work: a missing install fails first
    t0 = time.perf_counter()
    sources = sorted(sources, key=lambda s: s.video_id)
    num_videos = len(sources)
    uncaptioned = [s.video_id for s in sources if not len(s.captions.text)]
    if skip_uncaptioned:
        sources = [s for s in sources if len(s.captions.text)]
    fs.makedirs(posixpath.dirname(os.fspath(out_prefix)) or ".")
    options = json.loads(json.dumps({
        "loader": type(loader).__name__, **dataclasses.asdict(loader),
        "chunk_seconds": chunk_seconds}))
    tasks = [_ShardTask(i, path, tuple(sources[i::num_shards]))
             for i, path in enumerate(records.shard_paths(out_prefix, num_shards))]
    done = {t.index: sidecar for t in tasks
            if (sidecar := _finished_sidecar(t, options)) is not None}
    pending = [t for t in tasks if t.index not in done]
    if runner and pending:
        fresh = _run_on_beam(pending, loader, options, chunk_seconds, f"{out_prefix}.tasks",
                             [f"--runner={runner}", *beam_options])
    else:
        fresh = _run_tasks(pending, loader, options, chunk_seconds, workers)
    summary = {
        "out_prefix": str(out_prefix), "num_shards": num_shards, "options": options,
        **_outcomes([{**done, **fresh}[t.index] for t in tasks], fresh),
        "uncaptioned": uncaptioned, "missing": sorted(missing),
        "seconds": time.perf_counter() - t0}
    summary["counts"].update(
        videos=num_videos, uncaptioned=len(uncaptioned),
        skipped_uncaptioned=len(uncaptioned) if skip_uncaptioned else 0,
        missing=len(missing))
    _write_json(f"{out_prefix}.summary.json", summary)
    print(_format_summary(summary, f"{out_prefix}.summary.json"))
    return summary


def _finished_sidecar(task: _ShardTask, options: dict) -> dict | None:
    """The shard's sidecar if the shard is complete for this plan, else None."""
    sidecar_path = task.path + ".done.json"
    if not (fs.exists(task.path) and fs.exists(sidecar_path)):
        return None
    try:
        sidecar = json.loads(fs.read_text(sidecar_path))
    except json.JSONDecodeError:
        return None
    planned = [s.video_id for s in task.sources]
    if (sidecar.get("video_ids") != planned or sidecar.get("options") != options
            or sidecar.get("inputs") != sources_digest(task.sources)):
        return None
    return sidecar


def _run_tasks(tasks: list[_ShardTask], loader: Loader, options: dict,
               chunk_seconds: float, workers: int) -> dict[int, dict]:
    """Converts shards, in this process or a pool; returns sidecars by index."""
    with tqdm(total=sum(len(t.sources) for t in tasks), unit="video",
              desc="convert") as bar:
        if workers <= 1 or len(tasks) <= 1:
            return {t.index: _convert_shard(t, loader, options, chunk_seconds,
                                            lambda _: bar.update())
                    for t in tasks}
        return _run_pool(tasks, loader, options, chunk_seconds, workers, bar)


def _run_pool(tasks: list[_ShardTask], loader: Loader, options: dict,
              chunk_seconds: float, workers: int, bar: tqdm) -> dict[int, dict]:
    """Converts shards in `workers` processes, counting videos on `bar`."""
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    sizes = {t.index: len(t.sources) for t in tasks}
    reported = dict.fromkeys(sizes, 0)
    sidecars = {}
    with concurrent.futures.ProcessPoolExecutor(
            min(workers, len(tasks)), mp_context=context,
            initializer=_init_worker, initargs=(progress, os.getpid())) as pool:
        futures = {pool.submit(_convert_shard_in_worker, t, loader, options,
                               chunk_seconds): t.index for t in tasks}
        pending = set(futures)
        try:
            while pending:
                finished, pending = concurrent.futures.wait(
                    pending, timeout=0.5,
                    return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    index = futures[future]
                    sidecars[index] = future.result()
                    bar.update(sizes[index] - reported[index])
                    reported[index] = sizes[index]
                _drain_progress(progress, reported, sizes, bar)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return sidecars


def _beam():
    """The `apache_beam` module, imported when `--runner` asks for it."""
    try:
        import apache_beam
    except ModuleNotFoundError:
        raise ModuleNotFoundError("--runner converts on Apache Beam, which is not "
                                  "installed: pip install 'vtlearn[beam]'") from None
    return apache_beam


def _run_on_beam(tasks: list[_ShardTask], loader: Loader, options: dict,
                 chunk_seconds: float, task_dir: str, beam_args: list[str]
                 ) -> dict[int, dict]:
    """Converts shards as an Apache Beam pipeline, one element per shard.

    Each shard's task (its sources, captions included) is written to
    `<task_dir>/<index>.pkl` beside the output, so the runner's job graph
    holds only paths (HowTo100M's captions are GB). A worker loads one,
    converts the shard with `_convert_shard` (a `.tmp` file renamed, then the
    sidecar, so a retried element redoes it cleanly) and counts in Beam
    metrics ("vtlearn.convert": videos, failed, records, shards). The
    outcome is the sidecars, read back here: the summary is the local one's.
    """
    beam = _beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    fs.makedirs(task_dir)
    paths = []
    for task in tasks:
        path = fs.join(task_dir, f"{task.index:05d}.pkl")
        with fs.open(path, "wb") as f:
            f.write(pickle.dumps(task))
        paths.append(path)
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    _ = (pipeline | "Shards" >> beam.Create(paths)
         | "Spread" >> beam.Reshuffle()  # one shard per worker, not one fused bundle
         | "Convert" >> beam.Map(_convert_shard_on_beam, loader, options, chunk_seconds))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query()["counters"]
    logger.info("Beam counters: %s", {c.key.metric.name: c.committed for c in counters})
    sidecars = {t.index: _finished_sidecar(t, options) for t in tasks}
    unfinished = [t.path for t in tasks if sidecars[t.index] is None]
    if unfinished:
        raise RuntimeError(f"the Beam pipeline ended without finishing {len(unfinished)} "
                           f"shard(s) ({unfinished[0]}, ...); rerun to convert them")
    fs.rmtree(task_dir)
    return sidecars


def _convert_shard_on_beam(task_path: str, loader: Loader, options: dict,
                           chunk_seconds: float) -> int:
    """One Beam element: converts the shard whose task is pickled at `task_path`."""
    from apache_beam.metrics import Metrics

    def count(name: str, n: int = 1) -> None:
        Metrics.counter("vtlearn.convert", name).inc(n)

    task = pickle.loads(fs.read_bytes(task_path))
    sidecar = _convert_shard(task, loader, options, chunk_seconds,
                             lambda _: count("videos"))
    count("failed", len(sidecar["failed"]))
    count("records", sidecar["records"])
    count("shards")
    return task.index


def _drain_progress(progress, reported: dict[int, int], sizes: dict[int, int],
                    bar: tqdm) -> None:
    """Counts per-video progress messages of shards still running."""
    while True:
        try:
            index = progress.get_nowait()
        except queue_lib.Empty:
            return
        if reported[index] < sizes[index]:
            reported[index] += 1
            bar.update()


_progress_queue = None  # set in pool workers by _init_worker


def _init_worker(progress, parent: int) -> None:
    global _progress_queue
    _progress_queue = progress
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, interval: float = 0.2) -> None:
    """Ends this worker once its parent is gone (killed, even by SIGKILL): the
    worker is re-parented, so `os.getppid` changes. A shard being written is
    left as its `.tmp` file; finished shards are whole."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _convert_shard_in_worker(task: _ShardTask, loader: Loader, options: dict,
                             chunk_seconds: float) -> dict:
    return _convert_shard(task, loader, options, chunk_seconds,
                          lambda index: _progress_queue.put(index))


def _convert_shard(task: _ShardTask, loader: Loader, options: dict,
                   chunk_seconds: float, progress: Callable[[int], None]) -> dict:
    """Writes one shard (atomically), then its `.done.json`; returns that."""
    t0 = time.perf_counter()
    sidecar_path = task.path + ".done.json"
    if fs.exists(sidecar_path):
        fs.remove(sidecar_path)
    converted, failed, warnings, no_audio = [], {}, {}, []

    def examples():
        for source in task.sources:
            try:
                video, notes = loader(source)
                chunks = records.video_to_examples(video, chunk_seconds)
            except Exception as e:  # a bad input must not stop the shard
                failed[source.video_id] = f"{type(e).__name__}: {e}"
                logger.warning("skipping video %s: %s", source.video_id,
                               failed[source.video_id])
            else:
                converted.append(source.video_id)
                if notes:
                    warnings[source.video_id] = notes
                if _lacks_audio(video):
                    no_audio.append(source.video_id)
                yield from chunks
            progress(task.index)

    count = records.write_tfrecord(task.path, examples())
    sidecar = {
        "video_ids": [s.video_id for s in task.sources], "options": options,
        "inputs": sources_digest(task.sources), "records": count, "bytes": fs.size(task.path),
        "converted": converted, "failed": failed, "warnings": warnings,
        "no_audio": no_audio, "seconds": time.perf_counter() - t0}
    _write_json(sidecar_path, sidecar)
    return sidecar


def _lacks_audio(video: schema.Video) -> bool:
    """Whether audio was requested (sample_rate > 0) but the video has none:
    no waveform, or one that is all zeros."""
    return bool(video.sample_rate) and (video.waveform is None
                                        or not np.any(video.waveform))


def _write_json(path: str, data: dict) -> None:
    """Writes JSON atomically (tmp file, then rename), on any filesystem."""
    fs.write_text(path, json.dumps(data, indent=1))


def _outcomes(sidecars: list[dict], fresh: dict[int, dict]) -> dict:
    """Per-video outcomes and counts over all shards' sidecars."""
    failed = {k: v for s in sidecars for k, v in s["failed"].items()}
    warnings = {k: v for s in sidecars for k, v in s["warnings"].items()}
    no_audio = sorted(v for s in sidecars for v in s.get("no_audio", ()))
    return {
        "counts": {
            "converted": sum(len(s["converted"]) for s in sidecars),
            "failed": len(failed), "warned": len(warnings),
            "no_audio": len(no_audio),
            "shards_written": len(fresh),
            "shards_skipped_done": len(sidecars) - len(fresh),
            "records": sum(s["records"] for s in sidecars),
            "records_written": sum(s["records"] for s in fresh.values()),
            "bytes": sum(s["bytes"] for s in sidecars)},
        "failed": failed, "warnings": warnings, "no_audio": no_audio}


def _format_summary(summary: dict, path: str, examples: int = 5) -> str:
    c = summary["counts"]
    lines = [
        f"converted {c['converted']} of {c['videos']} videos into "
        f"{summary['num_shards']} shards ({c['shards_written']} written, "
        f"{c['shards_skipped_done']} skipped as done) in {summary['seconds']:.1f} s",
        f"records: {c['records']} ({c['records_written']} written now), "
        f"{c['bytes'] / 1e6:.1f} MB",
        f"without captions: {c['uncaptioned']} ({c['skipped_uncaptioned']} "
        f"skipped); annotated but without input file: {c['missing']}; "
        f"with warnings: {c['warned']}",
        f"converted without audio (audio requested): {c['no_audio']}"]
    lines += [f"  {k}: {'; '.join(summary['warnings'].get(k, []))}"
              for k in summary["no_audio"][:examples]]
    lines.append(f"failed: {c['failed']}")
    lines += [f"  {k}: {v}" for k, v in list(summary["failed"].items())[:examples]]
    lines.append(f"summary: {path}")
    return "\n".join(lines)


# Inputs ------------------------------------------------------------------------


def find_files(directory: str | Path, extensions: Sequence[str],
               recursive: bool = False, required: bool = False) -> dict[str, str]:
    """Maps file stem (video id) -> path for files with the given extensions,
    in a directory on any filesystem (`vtlearn.fs`).

    Raises:
        ValueError: two files share a stem; or `required` and none was found
            (the message names the directory and what it holds instead).
    """
    directory = os.fspath(directory)
    if not fs.isdir(directory):
        raise ValueError(f"{directory}: not a directory")
    if recursive:
        names = sorted(fs.walk_files(directory))
    else:
        names = [n for n in fs.listdir(directory) if not fs.isdir(fs.join(directory, n))]
    found = {}
    for name in names:
        stem, suffix = posixpath.splitext(posixpath.basename(name))
        if suffix.lower() in extensions:
            path = fs.join(directory, name)
            if stem in found:
                raise ValueError(f"two inputs for video {stem!r}: {found[stem]} and {path}")
            found[stem] = path
    if required and not found:
        held = sorted({posixpath.splitext(n)[1].lower() or posixpath.basename(n)
                       for n in names})
        hint = ""
        if ".npy" in extensions and ".npz" in held:
            npz = next(n for n in names if n.lower().endswith(".npz"))
            with fs.local_copy(fs.join(directory, npz)) as local, np.load(local) as arrays:
                held_arrays = ", ".join(arrays.files)
            hint = (f"; for .npz files name the arrays to convert with --feature_keys "
                    f"2d=NAME[,3d=NAME] ({posixpath.basename(npz)} holds: {held_arrays})")
        raise ValueError(f"{directory}: no {'/'.join(extensions)} file"
                         f"{' under it' if recursive else ''} (it holds "
                         f"{', '.join(held) or 'no files'}){hint}")
    return found


def make_sources(inputs: Mapping[str, Mapping[str, str]],
                 captions: Mapping[str, schema.Captions] | None = None,
                 segments: Mapping[str, schema.Segments] | None = None,
                 durations: Mapping[str, float] | None = None,
                 ) -> tuple[list[SourceVideo], list[str]]:
    """Joins input files with annotations.

    Args:
        inputs: video id -> role -> path (see `SourceVideo.inputs`).
        captions, segments, durations: annotations per video id.

    Returns:
        (sources sorted by id, sorted ids annotated with captions or segments
        but without input files).
    """
    captions, segments, durations = captions or {}, segments or {}, durations or {}
    sources = [SourceVideo(
        video_id=vid, inputs=dict(inputs[vid]),
        captions=captions.get(vid) or schema.Captions([], [], []),
        segments=segments.get(vid), duration=durations.get(vid))
        for vid in sorted(inputs)]
    missing = sorted((set(captions) | set(segments)) - set(inputs))
    return sources, missing


def convert_videos(video_dir: str | Path, out_prefix: str | Path, num_shards: int,
                   *, loader: VideoFileLoader = VideoFileLoader(),
                   captions: Mapping[str, schema.Captions] | None = None,
                   segments: Mapping[str, schema.Segments] | None = None,
                   **kwargs) -> dict:
    """Converts the video files under `video_dir` (recursively).

    Args:
        video_dir: holds `<video_id>.<ext>` files, ext in VIDEO_EXTENSIONS.
        out_prefix, num_shards: output shards.
        loader: decoding options.
        captions, segments: annotations per video id.
        **kwargs: `convert` options (chunk_seconds, workers, skip_uncaptioned).

    Returns:
        The summary.
    """
    files = find_files(video_dir, VIDEO_EXTENSIONS, recursive=True, required=True)
    sources, missing = make_sources({v: {"video": p} for v, p in files.items()},
                                    captions, segments)
    return convert(sources, loader, out_prefix, num_shards, missing=missing,
                   **kwargs)


def convert_features(features_dir: str | Path | None, out_prefix: str | Path,
                     num_shards: int, *, feature_keys: Mapping[str, str] | None = None,
                     features_3d_dir: str | Path | None = None,
                     feature_rate: float = 1.0,
                     waveform_dir: str | Path | None = None,
                     waveform_rate: float = 0.0,
                     captions: Mapping[str, schema.Captions] | None = None,
                     segments: Mapping[str, schema.Segments] | None = None,
                     durations: Mapping[str, float] | None = None,
                     **kwargs) -> dict:
    """Converts per-video feature files.

    Args:
        features_dir: `<id>.npz` files holding the streams named by
            `feature_keys`, or (without `feature_keys`) `<id>.npy` 2d features.
        out_prefix, num_shards: output shards.
        feature_keys: stream ("2d"/"3d") -> array name inside the `.npz`.
        features_3d_dir: `<id>.npy` 3d features (with `.npy` 2d features or
            alone).
        feature_rate: feature vectors per second.
        waveform_dir: optional `<id>.npy` mono waveforms at `waveform_rate`;
            a video without one is converted without audio, warned about and
            listed under `no_audio`.
        waveform_rate: Hz; required with `waveform_dir`.
        captions, segments, durations: annotations per video id; the duration
            defaults to N / feature_rate.
        **kwargs: `convert` options (chunk_seconds, workers, skip_uncaptioned).

    Returns:
        The summary.
    """
    dirs: dict[str, tuple[str | Path, str]] = {}
    if feature_keys:
        if features_3d_dir is not None or features_dir is None:
            raise ValueError("feature_keys names arrays of features_dir/<id>.npz: "
                             "it needs features_dir and excludes features_3d_dir")
        unknown = set(feature_keys) - set(FEATURE_STREAMS)
        if unknown:
            raise ValueError(f"unknown feature streams {sorted(unknown)}; use "
                             f"{FEATURE_STREAMS}")
        dirs = {s: (features_dir, ".npz") for s in feature_keys}
    else:
        if features_dir is not None:
            dirs["2d"] = (features_dir, ".npy")
        if features_3d_dir is not None:
            dirs["3d"] = (features_3d_dir, ".npy")
    if not dirs:
        raise ValueError("give features_dir and/or features_3d_dir")
    if waveform_dir is not None and waveform_rate <= 0:
        raise ValueError("waveform_dir needs a positive waveform_rate")
    found = {s: find_files(d, (ext,), required=True) for s, (d, ext) in dirs.items()}
    if waveform_dir is not None:
        found["waveform"] = find_files(waveform_dir, (".npy",))
    ids = set().union(*(found[s] for s in dirs))
    inputs = {v: {role: files[v] for role, files in found.items() if v in files}
              for v in ids}
    loader = FeatureLoader(
        streams=tuple(s for s in FEATURE_STREAMS if s in dirs),
        npz_keys=dict(feature_keys or {}), feature_rate=feature_rate,
        waveform_rate=waveform_rate if waveform_dir is not None else 0.0)
    sources, missing = make_sources(inputs, captions, segments, durations)
    return convert(sources, loader, out_prefix, num_shards, missing=missing,
                   **kwargs)


def build_vocabulary(records: str, out: str | Path, min_count: int = 1,
                     max_size: int | None = None) -> dict:
    """Writes the vocabulary of the captions in `records` (comma-separated globs).

    Words are ranked by count over every video's captions (each video once),
    most frequent first; `min_count` and `max_size` cut the tail. Build it
    from the training split only, and train with
    `--config.data.vocab_path=OUT`.

    Returns:
        {"out", "words", "videos", "captions"}.
    """
    captions = {}
    for pattern in records.split(","):
        captions |= video_captions(pattern)
    texts = [t for per_video in captions.values() for t in per_video]
    if not texts:
        raise ValueError(f"records {records!r} hold no captions: convert them with "
                         "--captions to build a vocabulary")
    vocabulary = Vocabulary.build(texts, min_count, max_size)
    if not vocabulary.words:
        raise ValueError(f"no word of the {len(texts)} captions in {records!r} is seen "
                         f"--min_count={min_count} times: {out} not written")
    vocabulary.save(out)
    summary = {"out": str(out), "words": len(vocabulary.words), "videos": len(captions),
               "captions": len(texts)}
    print(json.dumps(summary))
    return summary


# Command line ------------------------------------------------------------------


def _parse_keys(text: str) -> dict[str, str]:
    """"2d=resnet,3d=resnext" -> {"2d": "resnet", "3d": "resnext"}."""
    try:
        return dict(item.split("=", 1) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected stream=key pairs like 2d=resnet,3d=resnext, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = cli.argument_parser(
        prog="python -m vtlearn.data.convert",
        description="Convert videos or feature arrays + captions into vtlearn "
                    "TFRecord shards (see the module docstring).")
    commands = parser.add_subparsers(dest="command", required=True)
    videos = commands.add_parser("videos", help="video files + captions")
    videos.add_argument("--video_dir", required=True)
    videos.add_argument("--fps", type=float, default=10.0)
    videos.add_argument("--short_side", type=int, default=256)
    videos.add_argument("--max_aspect", type=float, default=None,
                        help="centre-crop frames to this long/short ratio")
    videos.add_argument("--jpeg_quality", type=int, default=90)
    videos.add_argument("--sample_rate", type=int, default=16000,
                        help="audio rate in Hz; 0 drops audio")
    features = commands.add_parser("features", help="feature arrays + captions")
    features.add_argument("--features_dir", default=None,
                          help="<id>.npy 2d features, or <id>.npz with "
                               "--feature_keys")
    features.add_argument("--feature_keys", type=_parse_keys, default=None,
                          help="stream=array pairs in the .npz, e.g. "
                               "2d=resnet,3d=resnext")
    features.add_argument("--features_3d_dir", default=None,
                          help="<id>.npy 3d features")
    features.add_argument("--feature_rate", type=float, default=1.0,
                          help="feature vectors per second")
    features.add_argument("--durations", default=None,
                          help="CSV video_id,duration (default N / feature_rate)")
    features.add_argument("--waveform_dir", default=None,
                          help="<id>.npy mono waveforms")
    features.add_argument("--waveform_rate", type=float, default=16000.0)
    vocab = commands.add_parser(
        "vocab", help="the vocabulary of converted records' captions (data.vocab_path)")
    vocab.add_argument("--records", required=True,
                       help="glob(s) of the training records, comma-separated")
    vocab.add_argument("--out", required=True, help="vocabulary file to write")
    vocab.add_argument("--min_count", type=int, default=1,
                       help="keep words seen at least this often")
    vocab.add_argument("--max_size", type=int, default=None,
                       help="keep at most this many words, most frequent first")
    yt8m = commands.add_parser("youtube8m",
                               help="YouTube-8M frame-level records + ASR captions")
    yt8m.add_argument("--records", required=True, help="glob(s) of the record files")
    yt8m.add_argument("--streams", default="rgb,audio",
                      help="rgb (-> 2d features) and/or audio (-> 3d features)")
    for sub in (videos, features, yt8m):
        sub.add_argument("--captions", default=None,
                         help="caption JSON, or a directory of <id>.csv files")
        sub.add_argument("--segments", default=None,
                         help="CSV video_id,label,start,end of ground-truth steps")
        sub.add_argument("--out_prefix", required=True)
        sub.add_argument("--num_shards", type=int, required=True)
        sub.add_argument("--chunk_seconds", type=float,
                         default=schema.DEFAULT_CHUNK_SECONDS)
        sub.add_argument("--workers", type=int, default=1)
        sub.add_argument("--runner", default="",
                         help="convert on Apache Beam with this runner (DirectRunner, "
                              "DataflowRunner, FlinkRunner, SparkRunner) instead of "
                              "--workers local processes; Beam's own options follow a "
                              "lone --")
        sub.add_argument("--skip_uncaptioned", action="store_true",
                         help="leave out videos without captions (default: keep)")
    return parser


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the arguments, Beam's own options after a lone `--`)."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    return _parser().parse_args(argv[:cut]), argv[cut + 1:]


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the command line; returns the summary."""
    return _run(_parse(sys.argv[1:] if argv is None else argv))


def _run(parsed: tuple[argparse.Namespace, list[str]]) -> dict:
    args, beam_options = parsed
    logging.basicConfig(format="%(levelname)s %(message)s")
    if args.command == "vocab":
        return build_vocabulary(args.records, args.out, args.min_count, args.max_size)
    if beam_options and not args.runner:
        raise SystemExit(f"Beam options {beam_options} need --runner")
    common = dict(
        captions=captions_lib.read_captions(args.captions) if args.captions else None,
        segments=(captions_lib.read_segments_csv(args.segments) if args.segments
                  else None),
        chunk_seconds=args.chunk_seconds, workers=args.workers,
        skip_uncaptioned=args.skip_uncaptioned, runner=args.runner,
        beam_options=beam_options)
    if args.command == "youtube8m":
        from vtlearn.data.youtube8m import convert_youtube8m

        del common["segments"]
        return convert_youtube8m(args.records, args.out_prefix, args.num_shards,
                                 streams=tuple(args.streams.split(",")), **common)
    if args.command == "videos":
        loader = VideoFileLoader(fps=args.fps, short_side=args.short_side,
                                 max_aspect=args.max_aspect,
                                 jpeg_quality=args.jpeg_quality,
                                 sample_rate=args.sample_rate)
        return convert_videos(args.video_dir, args.out_prefix, args.num_shards,
                              loader=loader, **common)
    return convert_features(
        args.features_dir, args.out_prefix, args.num_shards,
        feature_keys=args.feature_keys, features_3d_dir=args.features_3d_dir,
        feature_rate=args.feature_rate,
        waveform_dir=args.waveform_dir, waveform_rate=args.waveform_rate,
        durations=(captions_lib.read_durations_csv(args.durations)
                   if args.durations else None), **common)


def _command(parsed: tuple[argparse.Namespace, list[str]]) -> None:
    _run(parsed)  # it prints its summary


if __name__ == "__main__":
    cli.run(_parse, _command)
