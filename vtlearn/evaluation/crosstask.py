"""CrossTask zero-shot action-step localisation (MIL-NCE Table 4d, MCN Table 2, VT-TWINS).

Files (`data_dir` = the `crosstask_release/` folder):
  * `tasks_primary.txt`: per task a block of 6 lines: id, title, URL, number
    of steps K, the K step names separated by commas, a blank line;
  * `videos_val.csv` (`split="val"`, the zero-shot protocol's videos) or
    `videos.csv` (`split="all"`): lines `task,video_id,url`;
  * `annotations/<task>_<video_id>.csv`: lines `step,start,end` (step 1-based,
    seconds);
  * the videos, `<video_id>.<ext>` anywhere under `video_dir` (default
    `data_dir`), or per-video features (`features_dir`) for feature runs.

Protocol (CrossTask, Zhukov et al. 2019, as the MIL-NCE and HowTo100M papers
use it zero-shot): each second t of a video is a window [t, t+1) (a pixel
model sees the `data.num_frames` clip centred on it); the score of step k at
t is the similarity of the step name's text embedding with that window; the
ordering dynamic program assigns each step exactly one second, the steps in
the task's order at strictly increasing seconds, maximising the summed
scores (the release's `dp.pyx` with `exactly_one=True` and zero background
cost). A step is recalled when its second lies inside one of its annotated
intervals, floor(start) <= t < ceil(end) (the release's `read_assignment`).

Aggregation (`aggregate`):
  * "task" (CrossTask's `get_recalls`, MIL-NCE, HowTo100M, VT-TWINS): per
    primary task, hits summed over its videos / annotated steps summed over
    its videos; the reported recall is the mean over tasks;
  * "video" (MCN's per-video average): per video hits / annotated steps,
    averaged over the task's videos, then over tasks.
Videos without an annotation file are left out, as in the release (counted:
`videos_unannotated`), as are missing and undecodable videos (counted). A video
shorter than its task's number of steps (in seconds) cannot hold the
assignment and is left out (counted: `videos_too_short`). `recall_uniform` is
CrossTask's uniform-assignment baseline (step k at second floor((k + 1/2) T / K))
and `recall_random` the same DP on standard-normal scores (seed 0): chance.

IoU / IoD (MCN Table 2's other columns; its `eval_cross.py` computes neither,
so the prediction is our reading of its §4.4, "given each frame in the video,
we perform a zero-shot classification of the given labels"): every second is
classified as its highest-scoring step of the task, with no background class,
so a step predicted on an unannotated second is a false positive that lowers
IoD and IoU, as MCN says these metrics do. The ground truth of a second is its
annotated step (the first, where intervals overlap) or background. Both use
the per-segment convention of `vtlearn.evaluation.segments.segment_overlaps`,
averaged over a video's annotated segments, then over the task's videos, then
over tasks. `uniform/IoU` and `uniform/IoD` score the video cut into K equal
parts in the task's order.

With `clustering=True`, MCN's appendix B.2 on CrossTask as well: the
one-second windows inside an annotated step, clustered per task by k-means
with k = the task's steps shown (`vtlearn.evaluation.clustering`), NMI, ARI,
Hungarian accuracy, ⟨H⟩ and ⟨p_max⟩ ("clustering/...", random cluster ids
under "clustering/random/...").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import ml_collections
import numpy as np

from vtlearn.data import schema as S
from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark
from vtlearn.evaluation.segments import segment_overlaps

SPLIT_FILES = {"val": "videos_val.csv", "all": "videos.csv"}


@dataclasses.dataclass(frozen=True)
class Task:
    """A CrossTask task: its id, title and ordered step names."""

    task_id: str
    title: str
    steps: tuple[str, ...]


def read_tasks(path: str | Path) -> dict[str, Task]:
    """The tasks of `tasks_primary.txt` (6-line blocks), by id, in file order.

    Raises:
      ValueError: naming the file and line of a block that does not parse.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    tasks = {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block = lines[i:i + 5]
        if len(block) < 5:
            raise ValueError(f"{path}: line {i + 1}: task block of {len(block)} lines; a block "
                             "is id, title, URL, number of steps, comma-separated steps")
        task_id, title, _, count, steps = (line.strip() for line in block)
        try:
            k = int(count)
        except ValueError:
            raise ValueError(f"{path}: line {i + 4}: number of steps {count!r} is not an "
                             "integer") from None
        names = tuple(s.strip() for s in steps.split(","))
        if len(names) != k or not all(names):
            raise ValueError(f"{path}: line {i + 5}: task {task_id} declares {k} steps but "
                             f"lists {len(names)} non-empty ones: {steps!r}")
        if task_id in tasks:
            raise ValueError(f"{path}: line {i + 1}: task {task_id} listed twice")
        tasks[task_id] = Task(task_id, title, names)
        i += 5
    if not tasks:
        raise ValueError(f"{path}: no task")
    return tasks


def read_videos(path: str | Path) -> list[tuple[str, str]]:
    """(task id, video id) per line `task,video_id,url` of a CrossTask video list."""
    path = Path(path)
    out = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.strip().split(",")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}: line {line}: expected task,video_id,url, got {text!r}")
        out.append((parts[0], parts[1]))
    return out


def read_annotation(path: str | Path, num_steps: int) -> list[tuple[int, float, float]]:
    """(step 0-based, start, end) per line `step,start,end` (step 1-based).

    Raises:
      ValueError: naming the file and line of a bad row (a step outside
        1..num_steps, an interval that ends before it starts).
    """
    path = Path(path)
    rows = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            step, start, end = text.strip().split(",")
            step, start, end = int(float(step)), float(start), float(end)
        except ValueError:
            raise ValueError(f"{path}: line {line}: expected step,start,end, got "
                             f"{text!r}") from None
        if not 1 <= step <= num_steps:
            raise ValueError(f"{path}: line {line}: step {step} outside 1..{num_steps} "
                             "(the task's steps)")
        if not 0 <= start <= end:
            raise ValueError(f"{path}: line {line}: interval [{start}, {end}] must satisfy "
                             "0 <= start <= end")
        rows.append((step - 1, start, end))
    return rows


def ground_truth(rows: Sequence[tuple[int, float, float]], num_seconds: int,
                 num_steps: int) -> np.ndarray:
    """uint8 [T, K]: 1 where second t lies in an interval of step k,
    floor(start) <= t < ceil(end)."""
    y = np.zeros((num_seconds, num_steps), np.uint8)
    for step, start, end in rows:
        y[int(math.floor(start)):int(math.ceil(end)), step] = 1
    return y


def order_constrained_assignment(scores: np.ndarray) -> np.ndarray:
    """Each step one second, in order, maximising the summed scores.

    Args:
      scores: [T, K] score of step k at second t, T >= K.

    Returns:
      uint8 [T, K] with one 1 per column, at rows t_1 < t_2 < ... < t_K that
      maximise sum_k scores[t_k, k] (ties: the earliest seconds).
    """
    scores = np.asarray(scores, np.float64)
    t_count, k_count = scores.shape
    if t_count < k_count:
        raise ValueError(f"{t_count} seconds cannot hold {k_count} ordered steps")
    # best[k, t]: the best sum of steps 0..k with step k at second t.
    best = np.full((k_count, t_count), -np.inf)
    came_from = np.zeros((k_count, t_count), np.int64)
    best[0] = scores[:, 0]
    for k in range(1, k_count):
        prefix = best[k - 1].copy()  # max over t' < t of best[k - 1, t']
        arg = np.arange(t_count)
        for t in range(1, t_count):
            if prefix[t - 1] >= prefix[t]:
                prefix[t], arg[t] = prefix[t - 1], arg[t - 1]
        best[k, 1:] = prefix[:-1] + scores[1:, k]
        came_from[k, 1:] = arg[:-1]
    y = np.zeros((t_count, k_count), np.uint8)
    t = int(np.argmax(best[-1]))
    for k in range(k_count - 1, -1, -1):
        y[t, k] = 1
        t = int(came_from[k, t])
    return y


def uniform_assignment(num_seconds: int, num_steps: int) -> np.ndarray:
    """uint8 [T, K]: step k at second floor((k + 1/2) T / K) (CrossTask's baseline)."""
    y = np.zeros((num_seconds, num_steps), np.uint8)
    y[((np.arange(num_steps) + 0.5) * num_seconds / num_steps).astype(int),
      np.arange(num_steps)] = 1
    return y


def frame_labels(truth: np.ndarray) -> np.ndarray:
    """int [T]: each second's annotated step (the first of overlapping ones), or
    K (background) where none; `truth` is `ground_truth`'s uint8 [T, K]."""
    return np.where(truth.any(axis=1), np.argmax(truth, axis=1), truth.shape[1])


def uniform_segmentation(num_seconds: int, num_steps: int) -> np.ndarray:
    """int [T]: the video cut into K equal consecutive parts, step k in part k."""
    return np.arange(num_seconds) * num_steps // num_seconds


def step_recall(truth: dict[str, list[np.ndarray]], predicted: dict[str, list[np.ndarray]],
                aggregate: str = "task") -> dict[str, float]:
    """Recall (percent) per task and its mean over tasks.

    Args:
      truth: task -> per video uint8 [T, K] annotated seconds (`ground_truth`).
      predicted: task -> per video uint8 [T, K] assignments, same order.
      aggregate: "task" (sum hits over a task's videos / sum of their
        annotated steps) or "video" (mean over the task's videos of each
        video's hits / annotated steps); videos with no annotated step count
        for neither.

    Returns:
      {task: recall} and "mean" over tasks with an annotated step.
    """
    if aggregate not in ("task", "video"):
        raise ValueError(f"aggregate must be 'task' or 'video', got {aggregate!r}")
    out = {}
    for task, videos in truth.items():
        hits = np.array([float((y * p).sum()) for y, p in zip(videos, predicted[task])])
        steps = np.array([float((y.sum(axis=0) > 0).sum()) for y in videos])
        if steps.sum() == 0:
            continue
        if aggregate == "task":
            out[task] = 100.0 * hits.sum() / steps.sum()
        else:
            keep = steps > 0
            out[task] = 100.0 * float(np.mean(hits[keep] / steps[keep]))
    out["mean"] = float(np.mean([v for v in out.values()])) if out else float("nan")
    return out


def default_config() -> ml_collections.ConfigDict:
    """Keys of a crosstask section (besides `type` and `every`)."""
    return benchmark.common_config(
        split="val",        # "val" (videos_val.csv) | "all" (videos.csv)
        aggregate="task",   # "task" (CrossTask, MIL-NCE) | "video" (MCN)
        num_clips=1,        # clips per one-second window
        clustering=False,   # also MCN's clustering metrics of the annotated windows
        outputs=("embedding",),  # clustering: embed_video outputs averaged per window
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Zero-shot step localisation on CrossTask; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.check_choice("split", SPLIT_FILES)
        self.check_choice("aggregate", ("task", "video"))
        self.tasks = read_tasks(self.path("tasks_primary.txt"))
        task_index = {t: i for i, t in enumerate(self.tasks)}
        self.videos, annotated, self.unannotated = {}, {}, 0
        for task, vid in read_videos(self.path(SPLIT_FILES[s.split])):
            if task not in self.tasks:
                continue  # a related task: not part of the primary benchmark
            path = self.path("annotations", f"{task}_{vid}.csv")
            if not path.is_file():
                self.unannotated += 1
                continue
            rows = read_annotation(path, len(self.tasks[task].steps))
            self.videos[vid] = (task, rows)
            annotated[vid] = dict(
                captions=benchmark.captions([], [], []),
                segments=S.Segments(label=np.array([r[0] for r in rows], np.int64),
                                    start=np.array([r[1] for r in rows], np.float32),
                                    end=np.array([r[2] for r in rows], np.float32)),
                category=task_index[task], category_name=self.tasks[task].title)
        if not annotated:
            raise ValueError(f"{self.path(SPLIT_FILES[s.split])}: no annotated video of a "
                             f"task in {self.path('tasks_primary.txt')}")
        self.video_sources, self.missing = self.sources(annotated)
        self.units = Units("window", num_clips=s.num_clips, window_seconds=1.0,
                           stride_seconds=1.0)

    def run(self, variables, step):
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False)
        step_text = {t: self.embed_texts(variables, list(task.steps))
                     for t, task in self.tasks.items()}
        truth, predicted, uniform, random = {}, {}, {}, {}
        overlaps = {"IoU": {}, "IoD": {}, "uniform/IoU": {}, "uniform/IoD": {}}
        rng = np.random.default_rng(0)
        too_short = 0
        for vid in sorted(set(units["video_id"])):
            task, rows = self.videos[vid]
            mine = np.flatnonzero(units["video_id"] == vid)
            mine = mine[np.argsort(units["start"][mine])]
            k = len(self.tasks[task].steps)
            if len(mine) < k:
                too_short += 1
                continue
            scores = self.method.similarity(step_text[task],
                                            {key: v[mine] for key, v in units.items()}).T
            truth.setdefault(task, []).append(ground_truth(rows, len(mine), k))
            labels = frame_labels(truth[task][-1])
            for prefix, guess in (("", np.argmax(scores, axis=1)),
                                  ("uniform/", uniform_segmentation(len(mine), k))):
                iou, iod = segment_overlaps(labels, guess, background=k)
                if not math.isnan(iou):
                    overlaps[prefix + "IoU"].setdefault(task, []).append(iou)
                    overlaps[prefix + "IoD"].setdefault(task, []).append(iod)
            predicted.setdefault(task, []).append(order_constrained_assignment(scores))
            uniform.setdefault(task, []).append(uniform_assignment(len(mine), k))
            random.setdefault(task, []).append(
                order_constrained_assignment(rng.standard_normal((len(mine), k))))
        recalls = step_recall(truth, predicted, self.settings.aggregate)
        baseline = step_recall(truth, uniform, self.settings.aggregate)
        chance = step_recall(truth, random, self.settings.aggregate)
        clusters = self.clustering(units, units["category"]) if self.settings.clustering else {}
        return ({"recall": recalls.pop("mean"), "recall_uniform": baseline["mean"],
                 "recall_random": chance["mean"]}
                | {name: 100.0 * float(np.mean([np.mean(v) for v in by_task.values()]))
                   if by_task else float("nan") for name, by_task in overlaps.items()}
                | {f"recall/task_{t}": float(v) for t, v in recalls.items()} | clusters
                | converted.counts()
                | {"videos": float(sum(map(len, truth.values()))),
                   "videos_unannotated": float(self.unannotated),
                   "videos_too_short": float(too_short)})
