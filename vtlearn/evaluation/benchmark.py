"""Downstream benchmarks read from their own files: what their evaluators share.

A benchmark evaluator (`youcook2`, `msrvtt`, `crosstask`, `action_recognition`,
`coin`, `mining_youtube`, `youtube8m_segments`) parses the benchmark's official annotation files into `SourceVideo`s in its
constructor, so a wrong file fails before training, naming the file and line.
When it runs, it converts those videos once into records that hold each video
whole (`vtlearn.data.convert`, one record per video), in a cache keyed by the
videos' files, their annotations and the run's input settings, and embeds the
units it needs with the shared evaluation pass (`base.embed_units`): the same
frame times, centre crops, feature pooling, audio and sharding as every other
evaluator. Each video is decoded once per cache: the next evaluation (during
training, of another checkpoint) reads the records. In a multi-process run
process 0 converts and the others wait, so `cache_dir` must be a folder every
process sees.

Inputs, chosen by the run's data settings:
  * pixels (`data.video=True`): the benchmark's video files, found by stem
    anywhere under `video_dir` (default `data_dir`), decoded with PyAV at `data.fps`, short side
    `data.eval_crop_size` (the evaluation centre crop then takes the centre
    square: the centre square of the frame, scaled to the crop size),
    audio at `data.audio_rate` when the run uses audio;
  * features (`data.video=False`): `features_dir/<video_id>.npz` with arrays
    "2d" and/or "3d" (the run's streams) or `<video_id>.npy` for a run with one
    stream, `feature_rate` vectors per second; a run with audio also reads
    `waveform_dir/<video_id>.npy` (mono, at `data.audio_rate`), as
    `vtlearn.data.convert features --waveform_dir` does.

Every annotated video without an input file, and every one that fails to decode,
is counted ("videos_missing", "videos_failed" in the metrics) and handled as
each benchmark's reference does (a miss, or left out); the conversion summary
names each with its error.

Keys shared by every benchmark section (`common_config`): `data_dir`,
`video_dir`, `features_dir`, `feature_rate`, `waveform_dir`, `cache_dir`, `workers`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from vtlearn import fs
from vtlearn.data import convert
from vtlearn.data import schema as S
from vtlearn.evaluation import base

WHOLE_VIDEO_SECONDS = 1e7  # chunk length that keeps every video in one record
CACHE_VERSION = 1  # part of the cache key: bump when the conversion changes


def common_config(**defaults) -> ml_collections.ConfigDict:
    """The keys every benchmark section has, plus its own `defaults`."""
    return ml_collections.ConfigDict(dict(
        data_dir="",       # the benchmark's folder, as downloaded
        video_dir="",      # video files (any depth); "" = data_dir
        features_dir="",   # feature-tower runs: <video_id>.npz ("2d", "3d") or .npy
        feature_rate=1.0,  # feature vectors per second
        waveform_dir="",   # feature runs with audio: <video_id>.npy at data.audio_rate
        cache_dir="",      # converted records; "" = $VTLEARN_DATA_DIR/benchmarks or ~/.cache
        workers=1,         # conversion processes
        **defaults))


def default_cache_dir() -> str:
    """$VTLEARN_DATA_DIR/benchmarks if set (any filesystem), else
    ~/.cache/vtlearn/benchmarks."""
    root = os.environ.get("VTLEARN_DATA_DIR")
    return (fs.join(root, "benchmarks") if root
            else os.path.expanduser("~/.cache/vtlearn/benchmarks"))


@dataclasses.dataclass(frozen=True)
class Converted:
    """A benchmark's videos as records.

    Attributes:
      files: record pattern.
      converted: ids of the videos in the records.
      missing: annotated ids without an input file.
      failed: id -> error, for inputs that did not convert.
    """

    files: str
    converted: frozenset[str]
    missing: tuple[str, ...]
    failed: dict[str, str]

    def counts(self) -> dict[str, float]:
        return {"videos_missing": float(len(self.missing)),
                "videos_failed": float(len(self.failed))}


class BenchmarkEvaluator(base.Evaluator):
    """An evaluator over a benchmark's own files; see the module docstring.

    Subclasses parse their annotations in `__init__` (joining them with the
    input files by `sources`) and, in `run`, call `convert`, then embed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        if not s.data_dir:
            raise ValueError(f"config.evals.{self.name}.data_dir is empty: set it to the "
                             f"benchmark's folder ({type(self).__module__} says what it holds)")
        if not Path(s.data_dir).is_dir():
            raise ValueError(f"config.evals.{self.name}.data_dir={s.data_dir!r} is not a "
                             "directory")
        data = self.config.data
        self.streams = tuple(name for name, dim in (("2d", data.features_2d),
                                                    ("3d", data.features_3d)) if dim)

    def check_choice(self, key: str, choices) -> None:
        """Raises naming `config.evals.<name>.<key>` unless its value is one of `choices`."""
        value = self.settings[key]
        if value not in choices:
            raise ValueError(f"config.evals.{self.name}.{key} must be one of "
                             f"{sorted(choices)}, got {value!r}")

    def clustering(self, units: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, float]:
        """Clustering metrics of the units that show a step, k-means within each group
        (`clustering.cluster_units`), keys prefixed "clustering/"."""
        from vtlearn.evaluation.clustering import cluster_units

        metrics = cluster_units(units, self.settings.outputs, groups,
                                f"config.evals.{self.name}.outputs")
        return {} if metrics is None else {f"clustering/{k}": v for k, v in metrics.items()}

    def embed_units(self, variables, files, units, with_text=True, average_clips=True):
        """`base.embed_units` reading the benchmark's own captions (not the lab's
        `data.eval_text_key`)."""
        data = ml_collections.ConfigDict(self.config.data.to_dict())
        data.eval_text_key = ""
        return base.embed_units(self.method, variables, self.mesh, data, files, units,
                                self.batch_size, with_text=with_text,
                                average_clips=average_clips)

    def path(self, *parts: str) -> Path:
        """A file of the benchmark: `data_dir/parts...`."""
        return Path(self.settings.data_dir, *parts)

    def input_files(self) -> dict[str, dict[str, str]]:
        """Video id -> {"video": path} (pixels) or {"2d": path, "3d": path} (features)."""
        s = self.settings
        if self.config.data.video:
            found = convert.find_files(s.video_dir or s.data_dir, convert.VIDEO_EXTENSIONS, recursive=True,
                                       required=True)
            return {vid: {"video": path} for vid, path in found.items()}
        if not s.features_dir:
            raise ValueError(f"config.evals.{self.name}.features_dir is empty, and this run "
                             "reads features (data.video=False): point it at the benchmark "
                             "videos' <video_id>.npz / .npy feature files")
        found = convert.find_files(s.features_dir, (".npz", ".npy"), recursive=True,
                                   required=True)
        if len(self.streams) > 1 and any(p.endswith(".npy") for p in found.values()):
            raise ValueError(f"config.evals.{self.name}.features_dir={s.features_dir!r}: "
                             f"the run reads {self.streams} features; .npy files hold one "
                             "stream, use <video_id>.npz with arrays named 2d and 3d")
        inputs = {vid: {stream: path for stream in self.streams} for vid, path in found.items()}
        if self.config.data.audio_seconds > 0:
            if not s.waveform_dir:
                raise ValueError(f"config.evals.{self.name}.waveform_dir is empty, and this "
                                 "feature run reads audio: point it at <video_id>.npy waveforms")
            waveforms = convert.find_files(s.waveform_dir, (".npy",), recursive=True,
                                           required=True)
            for vid in inputs.keys() & waveforms.keys():
                inputs[vid]["waveform"] = waveforms[vid]
        return inputs

    def loader(self) -> convert.Loader:
        data = self.config.data
        if data.video:
            return convert.VideoFileLoader(
                fps=data.fps, short_side=data.eval_crop_size,
                sample_rate=data.audio_rate if data.audio_seconds > 0 else 0)
        return convert.FeatureLoader(
            streams=self.streams, npz_keys={s: s for s in self.streams},
            feature_rate=self.settings.feature_rate,
            waveform_rate=data.audio_rate if data.audio_seconds > 0 else 0.0)

    def convert(self, sources: Sequence[convert.SourceVideo],
                missing: Sequence[str] = ()) -> Converted:
        """Records of `sources` (cached; written by process 0, read by all).

        Args:
          sources: the annotated videos that have input files.
          missing: annotated video ids without one.
        """
        if not sources:
            raise ValueError(f"config.evals.{self.name}: none of the {len(missing)} annotated "
                             f"videos has an input file (e.g. {list(missing)[:3]})")
        loader = self.loader()
        key = cache_key(sources, loader)
        benchmark = type(self).__module__.rsplit(".", 1)[-1]  # sections of one type share
        root = fs.join(self.settings.cache_dir or default_cache_dir(), f"{benchmark}-{key}")
        prefix = fs.join(root, "videos")
        num_shards = max(jax.process_count(), min(64, math.ceil(len(sources) / 8)))
        summary_path = f"{prefix}.summary.json"
        if jax.process_index() == 0:  # finished shards are kept: a rerun converts nothing
            logging.info("%s: records of %d videos in %s", self.name, len(sources), root)
            convert.convert(sources, loader, prefix, num_shards,
                            chunk_seconds=WHOLE_VIDEO_SECONDS, workers=self.settings.workers,
                            missing=missing)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"{self.name} conversion")
        summary = json.loads(fs.read_text(summary_path))
        failed = dict(summary["failed"])
        if failed:
            logging.warning("%s: %d videos failed to convert (see %s), e.g. %s", self.name,
                            len(failed), summary_path, list(failed.items())[:3])
        if summary["counts"]["converted"] == 0:
            raise ValueError(f"config.evals.{self.name}: no video converted; errors in "
                             f"{summary_path}, e.g. {list(failed.items())[:3]}")
        converted = frozenset(s.video_id for s in sources) - set(failed)
        return Converted(f"{prefix}-*-of-{num_shards:05d}.tfrecord", converted,
                         tuple(sorted(missing)), failed)

    def sources(self, annotated: dict[str, dict]) -> tuple[list[convert.SourceVideo],
                                                            list[str]]:
        """Joins annotations with input files.

        Args:
          annotated: video id -> `SourceVideo` fields besides `video_id` and
            `inputs` (captions, segments, category, category_name).

        Returns:
          (sources, ids without an input file).
        """
        inputs = self.input_files()
        sources = [convert.SourceVideo(video_id=vid, inputs=inputs[vid], **fields)
                   for vid, fields in sorted(annotated.items()) if vid in inputs]
        return sources, sorted(set(annotated) - set(inputs))


def cache_key(sources: Sequence[convert.SourceVideo], loader: convert.Loader) -> str:
    """16 hex digits over the conversion options, the annotations and each input
    file's path, size and modification time (a changed file converts again;
    `convert.sources_digest`)."""
    blob = json.dumps({
        "version": CACHE_VERSION, "loader": type(loader).__name__,
        "options": json.loads(json.dumps(dataclasses.asdict(loader))),
        "videos": convert.sources_digest(sources)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def label_text(name: str) -> str:
    """A class label as words: "brush_hair" -> "brush hair", "ApplyEyeMakeup" ->
    "apply eye makeup", "YoYo" -> "yo yo"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " "))
    return " ".join(spaced.lower().split())


def captions(texts: Sequence[str], start: Sequence[float],
             end: Sequence[float]) -> S.Captions:
    """A caption track from annotation rows (any order)."""
    return S.Captions(text=list(texts), start=np.asarray(start, np.float32),
                      end=np.asarray(end, np.float32))


def unit_index(units: dict[str, np.ndarray], keys: Sequence[tuple[str, float, float]]
               ) -> np.ndarray:
    """int [N]: the row of `units` for each (video id, start, end), -1 if absent.

    Times are compared as float32, as the records store them.
    """
    where = {(v, np.float32(s), np.float32(e)): i for i, (v, s, e) in
             enumerate(zip(units["video_id"], units["start"], units["end"]))}
    return np.array([where.get((v, np.float32(s), np.float32(e)), -1) for v, s, e in keys],
                    np.int64)
