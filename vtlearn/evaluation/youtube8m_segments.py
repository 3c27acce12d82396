"""YouTube-8M Segments: rank each class's rated 5-s segments, MAP@K (MIL-NCE Table 4b).

Files (`data_dir`): the segment-rated frame-level records (`records`, default
`validate*.tfrecord`), `tf.train.SequenceExample`s whose context holds `id`,
`labels`, `segment_labels` (the class each rating is for), `segment_start_times`
(seconds; a segment lasts `segment_seconds` = 5) and `segment_scores` (1 = the
class is present, 0 = absent), with the quantised `rgb` / `audio` feature
lists of `vtlearn.data.youtube8m`; and, for zero-shot scores, the class names of
`vocabulary.csv` (columns `Index` and `Name`). Feature runs only: the dataset
ships features, not pixels (the run's `data.features_2d` / `features_3d` must
be the records' `rgb` / `audio` sizes).

Scores of a segment for a class (`scoring`):
  * "zero_shot": the similarity of the class name's text embedding with the
    segment's (its feature steps pooled as the run pools a window);
  * "linear": per class, a logistic regression on the segment features
    ("features", else the joint embedding), trained on that class's rated
    segments of the videos whose id hashes into the first `train_fraction`,
    scored on the others (the challenge's test ratings are private, and
    MIL-NCE does not say how its classifier was trained: this is ours).
Metric (the challenge's): per class, its rated (evaluated) segments sorted by
score; AP@K = (1 / P) sum over the top K of precision@i at each positive, P the
class's positives; MAP over classes with at least one positive evaluated
segment ("classes" in the metrics), K = `top_k` = 100,000.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import ml_collections
import numpy as np
from sklearn.linear_model import LogisticRegression

from vtlearn.data import schema as S
from vtlearn.data import youtube8m
from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark

SCORINGS = ("zero_shot", "linear")


@dataclasses.dataclass(frozen=True)
class Rating:
    """One rated segment: its video, start (s), class and 0/1 score."""

    video_id: str
    start: float
    label: int
    score: int


def read_ratings(example, where: str) -> list[Rating]:
    """The segment ratings of one record's context (see the module docstring).

    Raises:
      ValueError: naming `where` when the three segment lists differ in length
        or a score is not 0 or 1.
    """
    context = example.context.feature
    video_id = context["id"].bytes_list.value[0].decode()
    labels = list(context["segment_labels"].int64_list.value)
    starts = list(context["segment_start_times"].int64_list.value)
    scores = list(context["segment_scores"].float_list.value)
    if not len(labels) == len(starts) == len(scores):
        raise ValueError(f"{where}: segment_labels ({len(labels)}), segment_start_times "
                         f"({len(starts)}) and segment_scores ({len(scores)}) differ in length")
    if any(s not in (0.0, 1.0) for s in scores):
        raise ValueError(f"{where}: segment_scores must be 0 or 1, got {sorted(set(scores))}")
    return [Rating(video_id, float(t), int(c), int(s)) for c, t, s in zip(labels, starts, scores)]


def read_class_names(path: str | Path) -> dict[int, str]:
    """Class index -> name from the dataset's `vocabulary.csv` (`Index`, `Name`)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"Index", "Name"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: line 1 lacks the columns Index and Name")
        return {int(row["Index"]): row["Name"] for row in reader}


def average_precision_at_k(scores: np.ndarray, positives: np.ndarray, k: int) -> float:
    """AP@K of one class: (1 / P) Σ_{i ≤ K, item i positive} precision@i.

    Ties in `scores` are broken pessimistically (negatives first).
    """
    positives = np.asarray(positives, bool)
    total = int(positives.sum())
    if total == 0:
        raise ValueError("AP needs at least one positive")
    order = np.lexsort((positives, -np.asarray(scores)))[:k]  # by score desc, then negatives
    hits = positives[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision * hits) / total)


def mean_average_precision(ratings: list[Rating], scores: np.ndarray, k: int
                           ) -> tuple[float, int]:
    """(MAP@K over classes with a positive, number of such classes)."""
    labels = np.array([r.label for r in ratings])
    truth = np.array([r.score for r in ratings], bool)
    aps = [average_precision_at_k(scores[labels == c], truth[labels == c], k)
           for c in np.unique(labels) if truth[labels == c].any()]
    return (float(np.mean(aps)) if aps else float("nan")), len(aps)


def in_training_part(video_id: str, fraction: float) -> bool:
    """Whether a video's id hashes into the first `fraction` (a stable split)."""
    digest = int(hashlib.sha256(video_id.encode()).hexdigest()[:8], 16)
    return digest / 16 ** 8 < fraction


def default_config() -> ml_collections.ConfigDict:
    """Keys of a youtube8m_segments section (besides `type` and `every`)."""
    return benchmark.common_config(
        records="validate*.tfrecord",  # under data_dir
        vocabulary="vocabulary.csv",   # zero-shot class names
        segment_seconds=5.0,
        scoring="zero_shot",           # | "linear"
        train_fraction=0.5,            # "linear": videos whose ratings train the classifiers
        top_k=100_000,
        c=1.0,                         # "linear": inverse regularisation
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Segment ranking on YouTube-8M Segments; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        if self.config.data.video:
            raise ValueError(f"config.evals.{self.name}: YouTube-8M ships features, not "
                             "pixels; evaluate a feature run (data.video=False)")
        self.check_choice("scoring", SCORINGS)
        if not 0 < s.train_fraction < 1:
            raise ValueError(f"config.evals.{self.name}.train_fraction must lie in (0, 1)")
        pattern = str(self.path(s.records))
        self.where = youtube8m.index_records(pattern)
        self.ratings = []
        for vid, where in self.where.items():
            self.ratings += read_ratings(youtube8m.read_record(where), where)
        if not self.ratings:
            raise ValueError(f"{pattern}: no record has segment ratings (segment_labels)")
        self.names = (read_class_names(self.path(s.vocabulary)) if s.scoring == "zero_shot"
                      else {})
        unnamed = sorted({r.label for r in self.ratings} - set(self.names))
        if s.scoring == "zero_shot" and unnamed:
            raise ValueError(f"{self.path(s.vocabulary)} names no class {unnamed[:5]} "
                             "(rated in the records)")
        starts: dict[str, set[float]] = {}
        for r in self.ratings:
            starts.setdefault(r.video_id, set()).add(r.start)
        self.video_sources = [self._source(vid, sorted(starts[vid])) for vid in sorted(starts)]

    def _source(self, video_id: str, starts: list[float]):
        from vtlearn.data import convert

        start = np.array(starts, np.float32)
        return convert.SourceVideo(
            video_id=video_id, inputs={"youtube8m": self.where[video_id]},
            captions=benchmark.captions([], [], []),
            segments=S.Segments(label=np.zeros(len(starts), np.int64), start=start,
                                end=start + np.float32(self.settings.segment_seconds)))

    def loader(self):
        data = self.config.data
        streams = tuple(s for s, dim in (("rgb", data.features_2d), ("audio", data.features_3d))
                        if dim)
        dims = {"rgb": data.features_2d, "audio": data.features_3d}
        return youtube8m.YouTube8MLoader(streams, tuple((s, dims[s]) for s in streams))

    def run(self, variables, step):
        s = self.settings
        converted = self.convert(self.video_sources)
        units = self.embed_units(variables, converted.files,
                                 Units("segment", num_clips=1, min_seconds=0.0),
                                 with_text=False)
        rows = benchmark.unit_index(units, [(r.video_id, r.start, r.start + s.segment_seconds)
                                            for r in self.ratings])
        ratings = [r for r, i in zip(self.ratings, rows) if i >= 0]
        rows = rows[rows >= 0]
        if s.scoring == "zero_shot":
            classes = sorted({r.label for r in ratings})
            text = self.embed_texts(variables, [self.names[c] for c in classes])
            similarity = self.method.similarity(text, {k: v[rows] for k, v in units.items()})
            column = {c: i for i, c in enumerate(classes)}
            scores = similarity[[column[r.label] for r in ratings], np.arange(len(ratings))]
            evaluated = ratings
        else:
            scores, evaluated = self._linear_scores(units, ratings, rows)
        mean_ap, classes = mean_average_precision(evaluated, np.asarray(scores), s.top_k)
        return {"MAP": 100.0 * mean_ap, "classes": float(classes),
                "segments": float(len(evaluated)),
                "segments_unembedded": float(len(self.ratings) - len(ratings))
                } | converted.counts()

    def _linear_scores(self, units, ratings, rows):
        """Per class, a logistic regression trained on the training part's ratings."""
        s = self.settings
        features = units["features" if "features" in units else "embedding"][rows]
        train = np.array([in_training_part(r.video_id, s.train_fraction) for r in ratings])
        labels = np.array([r.label for r in ratings])
        truth = np.array([r.score for r in ratings])
        scores, evaluated = [], []
        for c in np.unique(labels):
            fit, test = (labels == c) & train, (labels == c) & ~train
            if not test.any() or len(np.unique(truth[fit])) < 2:
                continue  # the class cannot be trained or has nothing to score
            model = LogisticRegression(C=s.c, max_iter=2000).fit(features[fit], truth[fit])
            scores.append(model.decision_function(features[test]))
            evaluated += [r for r, t in zip(ratings, test) if t]
        return (np.concatenate(scores) if scores else np.zeros(0)), evaluated
