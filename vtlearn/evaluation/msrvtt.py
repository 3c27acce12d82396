"""MSR-VTT 1k-A zero-shot text→video retrieval (MIL-NCE Table 5b, VT-TWINS, MCN).

Files (`data_dir`): the JSFusion test split as a CSV with columns
`key,vid_key,video_id,sentence` (1,000 pairs; `MSRVTT_JSFUSION_test.csv`, or
the MIL-NCE release's `msrvtt_test.csv`; `annotations` names another), and
the videos `<video_id>.mp4` anywhere under `video_dir` (default `data_dir`).

Protocol of the MIL-NCE release (`eval_msrvtt.py`, `msrvtt_loader.py`): each
whole video is embedded as `num_clips` windows spread over it, averaged; each
sentence is a query whose one correct video is its own; R@1/5/10 and median
rank both ways. A missing or undecodable video is a miss ranked last, so the
denominator stays the number of pairs (the release would stop on it); the
count is reported (`videos_missing`, `videos_failed`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import ml_collections
import numpy as np

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark
from vtlearn.evaluation.retrieval import paired_retrieval_metrics
from vtlearn.evaluation.youcook2 import find_annotations

ANNOTATION_FILES = ("MSRVTT_JSFUSION_test.csv", "msrvtt_test.csv")
COLUMNS = ("video_id", "sentence")


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(video id, sentence) per row of a JSFusion-style CSV, in file order.

    Raises:
      ValueError: naming the file and line of a row without a video id, or a
        file without the columns.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        lacking = set(COLUMNS) - set(reader.fieldnames or ())
        if lacking:
            raise ValueError(f"{path}: line 1 lacks column(s) {sorted(lacking)}; the MSR-VTT "
                             "test CSV has key,vid_key,video_id,sentence")
        pairs = []
        for line, row in enumerate(reader, start=2):
            if not row["video_id"]:
                raise ValueError(f"{path}: line {line}: empty video_id")
            pairs.append((row["video_id"], row["sentence"] or ""))
    if not pairs:
        raise ValueError(f"{path}: no pair")
    return pairs


def default_config() -> ml_collections.ConfigDict:
    """Keys of an msrvtt section (besides `type` and `every`)."""
    return benchmark.common_config(
        annotations="",     # "" = the first of ANNOTATION_FILES in data_dir
        num_clips=4,        # windows averaged per video (the release's default)
        recall_at=(1, 5, 10),
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Zero-shot text→video retrieval on MSR-VTT; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.pairs = read_pairs(find_annotations(s.data_dir, s.annotations, ANNOTATION_FILES))
        self.video_sources, self.missing = self.sources({
            vid: dict(captions=benchmark.captions([], [], [])) for vid, _ in self.pairs})
        self.units = Units("video", num_clips=s.num_clips)

    def run(self, variables, step):
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False)
        row_of = {vid: i for i, vid in enumerate(units["video_id"])}
        rows = np.array([row_of.get(vid, -1) for vid, _ in self.pairs])
        present = rows >= 0
        text = self.embed_texts(variables, [t for _, t in self.pairs])[present]
        similarity = self.method.similarity(
            text, {k: v[rows[present]] for k, v in units.items()})
        metrics = paired_retrieval_metrics(similarity, len(self.pairs),
                                           tuple(self.settings.recall_at))
        return metrics | converted.counts() | {"pairs": float(len(self.pairs)),
                                               "pairs_embedded": float(present.sum())}
