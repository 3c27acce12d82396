"""COIN action segmentation with a linear classifier on frozen clip features (MIL-NCE Table 4a).

Files (`data_dir`): the official `COIN.json` (`annotations` names another
file): `database[video_id]` -> `subset` ("training" | "testing"),
`recipe_type` (task id), `class` (task name), `annotation[{id, segment:
[start, end], label}]` with `id` the step's id; the videos `<video_id>.<ext>`
anywhere under `video_dir` (default `data_dir`), or per-video features.

Protocol (MIL-NCE §4.4, after CBT [Sun et al. 2019]): each video is cut into
consecutive clips of `clip_seconds` = 1.5 s; a clip's label is the step whose
annotated segment holds the clip's centre, else background; a clip is
represented by the concatenation of its own features (the backbone's
"features", else the joint embedding), the mean of its video's clip features,
and an embedding of its relative position in the video; a logistic
regression (`linear_probe`: standardised features, C chosen by 3-fold
cross-validation on the training clips) is trained on the training videos'
clips and predicts every test clip; frame accuracy is the fraction of test
clips labelled correctly (clips stand for equal spans of frames; a video's
last clip may be shorter). Background clips count as a class of their own. The paper does not say how the position is
embedded: here sin and cos of 2^i π p for i = 0..`position_frequencies`−1,
p = clip centre / duration in [0, 1] (duration: the end of the video's last clip).
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from vtlearn.data import schema as S
from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark
from vtlearn.evaluation.linear_probe import linear_probe
from vtlearn.evaluation.youcook2 import find_annotations

SUBSETS = ("training", "testing")


def read_coin(path: str | Path) -> dict[str, dict]:
    """Video id -> {subset, task, task_name, steps: [(step id, start, end)]}.

    Raises:
      ValueError: naming the file and the entry of a malformed annotation.
    """
    path = Path(path)
    try:
        database = json.loads(path.read_text())["database"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a COIN annotation JSON with a 'database' "
                         f"({type(e).__name__}: {e})") from None
    videos = {}
    for vid, video in database.items():
        where = f"{path}: database[{vid!r}]"
        if video.get("subset") not in SUBSETS:
            raise ValueError(f"{where}: subset {video.get('subset')!r} is not one of {SUBSETS}")
        steps = []
        for i, note in enumerate(video.get("annotation", ())):
            try:
                start, end = (float(t) for t in note["segment"])
                step = int(note["id"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{where}.annotation[{i}]: needs an integer id and segment "
                                 f"[start, end] ({type(e).__name__}: {e})") from None
            if not 0 <= start <= end:
                raise ValueError(f"{where}.annotation[{i}]: segment [{start}, {end}] must "
                                 "satisfy 0 <= start <= end")
            steps.append((step, start, end))
        videos[vid] = dict(subset=video["subset"], task=int(video.get("recipe_type", -1)),
                           task_name=str(video.get("class", "")), steps=steps)
    if not videos:
        raise ValueError(f"{path}: no video")
    return videos


def position_embedding(position: np.ndarray, frequencies: int) -> np.ndarray:
    """[N, 2F]: sin and cos of 2^i π p for p in [0, 1], i < F."""
    angles = np.pi * np.asarray(position, np.float64)[:, None] * 2.0 ** np.arange(frequencies)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def clip_representations(features: np.ndarray, video_ids: np.ndarray, centres: np.ndarray,
                         durations: dict[str, float], frequencies: int) -> np.ndarray:
    """[N, 2F + 2P]: each clip's features, its video's mean, its position embedding.

    Args:
      features: [N, F] per clip.
      video_ids: [N] video of each clip.
      centres: [N] clip centres, seconds.
      durations: video id -> duration, seconds.
      frequencies: P of `position_embedding`.
    """
    means = np.zeros_like(features, dtype=np.float64)
    for vid in np.unique(video_ids):
        mine = video_ids == vid
        means[mine] = features[mine].mean(axis=0)
    position = np.array([min(c / durations[v], 1.0) for c, v in zip(centres, video_ids)])
    return np.concatenate([features, means, position_embedding(position, frequencies)], axis=1)


def default_config() -> ml_collections.ConfigDict:
    """Keys of a coin section (besides `type` and `every`)."""
    return benchmark.common_config(
        annotations="COIN.json",
        clip_seconds=1.5,
        position_frequencies=8,
        c_grid=(0.01, 0.1, 1.0, 10.0),
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """COIN frame accuracy of a logistic regression on clip features; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        if s.clip_seconds <= 0:
            raise ValueError(f"config.evals.{self.name}.clip_seconds must be > 0, got "
                             f"{s.clip_seconds}")
        self.videos = read_coin(find_annotations(s.data_dir, s.annotations))
        if {v["subset"] for v in self.videos.values()} != set(SUBSETS):
            raise ValueError(f"config.evals.{self.name}: {s.annotations} needs training and "
                             "testing videos")
        self.video_sources, self.missing = self.sources({
            vid: dict(captions=benchmark.captions([], [], []),
                      segments=S.Segments(label=np.array([t[0] for t in v["steps"]], np.int64),
                                          start=np.array([t[1] for t in v["steps"]], np.float32),
                                          end=np.array([t[2] for t in v["steps"]], np.float32)),
                      category=v["task"], category_name=v["task_name"])
            for vid, v in self.videos.items()})
        self.units = Units("window", num_clips=1, window_seconds=s.clip_seconds,
                           stride_seconds=s.clip_seconds)

    def run(self, variables, step):
        s = self.settings
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False)
        features = units["features" if "features" in units else "embedding"]
        durations = {}
        for vid, end in zip(units["video_id"], units["end"]):
            durations[vid] = max(durations.get(vid, 0.0), float(end))
        clips = clip_representations(features, units["video_id"],
                                     (units["start"] + units["end"]) / 2, durations,
                                     s.position_frequencies)
        subset = np.array([self.videos[v]["subset"] for v in units["video_id"]])
        train, test = subset == "training", subset == "testing"
        if not train.any() or not test.any():
            raise ValueError(f"config.evals.{self.name}: {train.sum()} training and "
                             f"{test.sum()} test clips embedded")
        result = linear_probe(clips[train], units["label"][train], clips[test],
                              units["label"][test], classifier="logistic",
                              c_grid=tuple(s.c_grid))
        return {"frame_accuracy": result["top1"], "chance": result["chance"],
                "clips_train": float(train.sum()), "clips_test": float(test.sum())
                } | converted.counts()
