"""MiningYouTube zero-shot alignment to a given transcript (MCN Table 2: IoD, IoU).

Files (`data_dir`), in the layout of the dataset's alignment code
(hildekuehne/Mining_YouTube_dataset, `video_alignment/`):
  * `videos_test.txt` (`split="test"`) or `videos_val.txt` ("val"): one video
    id per line;
  * `transcripts/<video_id>.*`: the video's ordered actions, whitespace-separated
    class names on the first line, the background class (`background`) included
    where the video shows none;
  * `groundTruth/<video_id>.*`, either
      - `.srt` subtitles, one entry per action (`index`, `HH:MM:SS,mmm -->
        HH:MM:SS,mmm`, the class name; spaces read as underscores), time
        not covered by an entry being background; or
      - any other extension (the alignment code's `.gt`): one class name per
        line per labelled frame, `label_rate` lines per second. The dataset
        labels frames and computes its features on every second frame (its
        README), so the rate depends on the copy: set it, there is no safe
        default (a run with such files and no `label_rate` stops before
        evaluating, naming the key);
  * the videos (or per-video features) as for every benchmark evaluator.
The archives that hold the real test annotations could not be read here, so
both ground-truth formats are tested on files written in them.

Protocol (MCN §4.3 "following the inference procedure of Kuehne et al."):
  * windows of one second ([t, t+1), a pixel model sees the clip centred on
    it); the score of class c at t is the similarity of the class name's text
    (underscores as spaces) with the window; background has no text and scores
    the video's mean class score at every window; the scores of the
    transcript's classes and background become log-probabilities by a softmax
    over them per window;
  * Viterbi over the transcript: every entry gets one segment of >= 1
    window, in order, covering the video, maximising the summed
    log-probabilities plus a Poisson length log-likelihood per segment with
    mean T / N (T windows, N transcript entries; zero-shot, there are no
    training lengths; the reference reads per-class means from a file);
  * metrics on the one-second grid (the ground truth's label at each window's
    centre, background past its end): frame accuracy (background included, as the reference's `eval`);
    IoU and IoD per ground-truth action segment (background excluded), the
    best over predicted segments of the same class of |G∩D| / |G∪D| and
    |G∩D| / |D|, averaged over a video's segments, then over videos (the
    reference code computes neither; MCN defines them as formulas only);
  * recall (MCN's MYT column, the `--mining` path of its `eval_cross.py`): the
    CrossTask ordering DP on the log-softmax of the video's actions' scores
    (in transcript order, first occurrences), one second per action; a hit
    when that second carries the action; hits / actions per video, averaged
    over videos.
`uniform/...` are frame accuracy, IoU and IoD of the same Viterbi with equal
scores everywhere (the transcript cut by the length model alone): the
baseline a model's scores have to beat.

With `clustering=True`, MCN's appendix B.2 on MiningYouTube: the windows whose
centre lies in an action, clustered per video by k-means with k = the
video's actions (`vtlearn.evaluation.clustering.cluster_by_task`), NMI, ARI,
Hungarian accuracy, ⟨H⟩ and ⟨p_max⟩ ("clustering/...").
"""

from __future__ import annotations

import math
from pathlib import Path

import ml_collections
import numpy as np
from scipy.special import gammaln, log_softmax

from vtlearn.data import schema as S
from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark
from vtlearn.evaluation.crosstask import order_constrained_assignment
from vtlearn.evaluation.segments import runs, segment_overlaps

SPLIT_FILES = {"test": "videos_test.txt", "val": "videos_val.txt"}


def _one(folder: Path, video_id: str) -> Path:
    found = sorted(folder.glob(f"{video_id}.*")) + sorted(folder.glob(video_id))
    if not found:
        raise ValueError(f"{folder}: no file for video {video_id}")
    return found[0]


def read_transcript(path: str | Path) -> list[str]:
    """The ordered class names of a transcript file's first line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    names = lines[0].split() if lines else []
    if not names:
        raise ValueError(f"{path}: line 1: empty transcript")
    return names


def read_frame_labels(path: str | Path) -> list[str]:
    """One class name per line (blank lines are errors, naming the line)."""
    path = Path(path)
    labels = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            raise ValueError(f"{path}: line {line}: empty label")
        labels.append(text.strip())
    if not labels:
        raise ValueError(f"{path}: no label")
    return labels


def read_srt(path: str | Path) -> list[tuple[str, float, float]]:
    """(class name, start, end) in seconds per entry of a subtitle file: blocks
    of an index line, a `HH:MM:SS,mmm --> HH:MM:SS,mmm` line and the class
    name, separated by blank lines.

    Raises:
      ValueError: naming the file and line of an entry that does not parse.
    """
    path = Path(path)
    out, block = [], []
    lines = path.read_text(encoding="utf-8-sig").splitlines() + [""]
    for number, text in enumerate(lines, start=1):
        if text.strip():
            block.append((number, text.strip()))
            continue
        if not block:
            continue
        if len(block) < 3:
            raise ValueError(f"{path}: line {block[0][0]}: an entry needs an index, a time "
                             f"line and a class name, got {[t for _, t in block]}")
        (_, _), (line, times), (_, label) = block[:3]
        try:
            start, end = (_srt_seconds(t) for t in times.split("-->"))
        except ValueError:
            raise ValueError(f"{path}: line {line}: expected 'HH:MM:SS,mmm --> "
                             f"HH:MM:SS,mmm', got {times!r}") from None
        if end < start:
            raise ValueError(f"{path}: line {line}: entry ends before it starts")
        out.append(("_".join(label.split()), start, end))
        block = []
    return out


def _srt_seconds(text: str) -> float:
    hours, minutes, seconds = text.strip().replace(",", ".").split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def read_ground_truth(path: Path, label_rate: float, background: str,
                      rate_key: str) -> list[tuple[str, float, float]]:
    """The video's action segments (class name, start, end) in seconds,
    background left out, from `.srt` subtitles or frame labels at `label_rate`."""
    if path.suffix == ".srt":
        return [r for r in read_srt(path) if r[0] != background]
    if label_rate <= 0:
        raise ValueError(f"{rate_key} must be set to read {path}: the ground truth's lines "
                         "per second (the frames the dataset labels)")
    return [(c, a / label_rate, b / label_rate) for c, a, b in runs(read_frame_labels(path))
            if c != background]


def labels_at(segments: list[tuple[str, float, float]], times: np.ndarray,
              background: str) -> list[str]:
    """The class of the first segment holding each time (start <= t < end), else
    background."""
    out = []
    for t in times:
        out.append(next((c for c, a, b in segments if a <= t < b), background))
    return out


def poisson_log_pmf(length: np.ndarray, mean: float) -> np.ndarray:
    """log P(length) under Poisson(mean), length >= 1."""
    length = np.asarray(length, np.float64)
    return length * math.log(mean) - mean - gammaln(length + 1)


def align(log_probs: np.ndarray, transcript: list[int], mean_length: float) -> np.ndarray:
    """Viterbi segmentation of T windows into the transcript's entries, in order.

    Args:
      log_probs: [T, C] per-window class log-probabilities.
      transcript: N class indices (N <= T), each one segment of >= 1 window.
      mean_length: the Poisson mean of every segment's length.

    Returns:
      int [T]: the class of each window, maximising sum of log_probs over the
      windows plus the length log-likelihoods of the N segments.
    """
    t_count, n_count = len(log_probs), len(transcript)
    if n_count > t_count:
        raise ValueError(f"{t_count} windows cannot hold {n_count} transcript entries")
    cum = np.concatenate([np.zeros((1, log_probs.shape[1])), np.cumsum(log_probs, 0)])
    lengths = poisson_log_pmf(np.arange(t_count + 1), mean_length)  # index = length
    lengths[0] = -np.inf
    best = np.full((n_count + 1, t_count + 1), -np.inf)  # best[n, t]: entries < n cover [0, t)
    best[0, 0] = 0.0
    came_from = np.zeros((n_count + 1, t_count + 1), np.int64)
    ends = np.arange(t_count + 1)
    for n, c in enumerate(transcript, start=1):
        # score[t, s] = best[n - 1, s] + windows [s, t) as class c + length t - s, s < t.
        length = ends[:, None] - ends[None, :]
        score = (best[n - 1][None, :] + cum[:, c][:, None] - cum[:, c][None, :]
                 + np.where(length > 0, lengths[np.clip(length, 0, t_count)], -np.inf))
        came_from[n] = np.argmax(score, axis=1)
        best[n] = score[ends, came_from[n]]
    out = np.empty(t_count, np.int64)
    t = t_count
    for n in range(n_count, 0, -1):
        s = came_from[n, t]
        out[s:t] = transcript[n - 1]
        t = s
    return out


def default_config() -> ml_collections.ConfigDict:
    """Keys of a mining_youtube section (besides `type` and `every`)."""
    return benchmark.common_config(
        split="test",              # "test" (videos_test.txt) | "val" (videos_val.txt)
        label_rate=0.0,            # ground-truth lines per second: required
        background="background",   # the background class's name
        num_clips=1,               # clips per one-second window
        clustering=False,          # also MCN's clustering metrics of the action windows
        outputs=("embedding",),    # clustering: embed_video outputs averaged per window
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Transcript alignment on MiningYouTube; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.check_choice("split", SPLIT_FILES)
        ids = [line.strip() for line in self.path(SPLIT_FILES[s.split]).read_text()
               .splitlines() if line.strip()]
        self.transcripts = {v: read_transcript(_one(self.path("transcripts"), v)) for v in ids}
        self.truth = {v: read_ground_truth(_one(self.path("groundTruth"), v), s.label_rate,
                                           s.background, f"config.evals.{self.name}.label_rate")
                      for v in ids}
        names = sorted({c for t in self.transcripts.values() for c in t} | {s.background})
        self.classes = [c for c in names if c != s.background] + [s.background]
        index = {c: i for i, c in enumerate(self.classes)}
        for v in ids:
            unknown = {c for c, _, _ in self.truth[v]} - set(self.transcripts[v])
            if unknown:
                raise ValueError(f"{_one(self.path('groundTruth'), v)}: labels "
                                 f"{sorted(unknown)[:3]} are not in the video's transcript")
        annotated = {}
        for v in ids:
            segs = self.truth[v]
            annotated[v] = dict(
                captions=benchmark.captions([], [], []),
                segments=S.Segments(label=np.array([index[r[0]] for r in segs], np.int64),
                                    start=np.array([r[1] for r in segs], np.float32),
                                    end=np.array([r[2] for r in segs], np.float32)))
        self.video_sources, self.missing = self.sources(annotated)
        self.units = Units("window", num_clips=s.num_clips, window_seconds=1.0,
                           stride_seconds=1.0)

    def run(self, variables, step):
        s = self.settings
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False)
        actions = self.classes[:-1]
        text = self.embed_texts(variables, [benchmark.label_text(c) for c in actions])
        accuracy, ious, iods, recalls, too_short = [], [], [], [], 0
        uniform = {"frame_accuracy": [], "IoU": [], "IoD": []}
        for vid in sorted(set(units["video_id"])):
            mine = np.flatnonzero(units["video_id"] == vid)
            mine = mine[np.argsort(units["start"][mine])]
            transcript = [self.classes.index(c) for c in self.transcripts[vid]]
            if len(transcript) > len(mine):
                too_short += 1
                continue
            scores = self.method.similarity(text, {k: v[mine] for k, v in units.items()}).T
            scores = np.concatenate([scores, np.full((len(mine), 1), scores.mean())], 1)
            present = sorted(set(transcript))
            log_probs = np.full(scores.shape, -np.inf)
            log_probs[:, present] = log_softmax(scores[:, present], axis=1)
            predicted = align(log_probs, transcript, len(mine) / len(transcript))
            truth = np.array([self.classes.index(c) for c in labels_at(
                self.truth[vid], np.arange(len(mine)) + 0.5, s.background)])
            accuracy.append(float(np.mean(truth == predicted)))
            actions = list(dict.fromkeys(c for c in transcript if c != len(self.classes) - 1))
            if actions and len(actions) <= len(mine):
                assigned = order_constrained_assignment(log_softmax(scores[:, actions], axis=1))
                recalls.append(float(np.mean([truth[np.argmax(assigned[:, k])] == c
                                              for k, c in enumerate(actions)])))
            iou, iod = segment_overlaps(truth, predicted, len(self.classes) - 1)
            if not math.isnan(iou):
                ious.append(iou)
                iods.append(iod)
            flat = align(np.where(np.isfinite(log_probs), 0.0, -np.inf), transcript,
                         len(mine) / len(transcript))
            uniform["frame_accuracy"].append(float(np.mean(truth == flat)))
            flat_iou, flat_iod = segment_overlaps(truth, flat, len(self.classes) - 1)
            if not math.isnan(flat_iou):
                uniform["IoU"].append(flat_iou)
                uniform["IoD"].append(flat_iod)
        if not accuracy:
            raise ValueError(f"config.evals.{self.name}: no video could be aligned")
        return {"frame_accuracy": 100.0 * float(np.mean(accuracy)),
                "IoU": 100.0 * float(np.mean(ious)) if ious else float("nan"),
                "IoD": 100.0 * float(np.mean(iods)) if iods else float("nan"),
                "recall": 100.0 * float(np.mean(recalls)) if recalls else float("nan"),
                "videos": float(len(accuracy)), "videos_too_short": float(too_short)
                } | {f"uniform/{k}": 100.0 * float(np.mean(v)) if v else float("nan")
                     for k, v in uniform.items()} | converted.counts() | (
                    self.clustering(units, units["video_id"]) if s.clustering else {})
