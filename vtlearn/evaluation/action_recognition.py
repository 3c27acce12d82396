"""HMDB51 / UCF101 action recognition on frozen features, and zero-shot from class names.

Files (`data_dir`), found at any depth under it:
  * HMDB51 (`dataset="hmdb51"`): the split files `<class>_test_split{1,2,3}.txt`
    (in `testTrainMulti_7030_splits/`), lines `<video>.avi <0|1|2>` (1 train,
    2 test, 0 unused); the class is the file name's part before
    `_test_split`;
  * UCF101 (`dataset="ucf101"`): `classInd.txt` (lines `<index> <Class>`),
    `trainlist0{1,2,3}.txt` (lines `<Class>/<video>.avi <index>`) and
    `testlist0{1,2,3}.txt` (lines `<Class>/<video>.avi`);
  * the videos, `<video>.avi` anywhere under `video_dir` (default `data_dir`),
    or per-video features (`features_dir`) for feature runs.

Linear protocol of the MIL-NCE release (`eval_hmdb.py`; MIL-NCE §4.4, Table 3
"frozen"): every video is embedded as `num_clips` windows spread over it
(10); the backbone features of each window ("features", S3D-G's pooled
mixed_5c; else the joint embedding) are a training sample of a linear SVM
(scikit-learn's LinearSVC, C = `svm_c` = 100, no scaling); a test video's
class maximises the sum of the decision functions over its windows; top-1
accuracy per split and the mean over splits (percent). The release reads
HMDB at its native frame rate and also embeds horizontally flipped windows;
here windows are `data.num_frames` at `data.fps`, unflipped.

Zero-shot (MCN appendix C.3): the class names as text ("brush_hair" ->
"brush hair", "ApplyEyeMakeup" -> "apply eye makeup"); a test video's class
is the name whose embedding scores highest against its mean window
embedding (the method's similarity); top-1 per split and mean.

Videos listed as 0 in every split are not embedded (`videos_unused`);
missing or undecodable videos are left out of their splits and counted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_collections
import numpy as np
from sklearn.svm import LinearSVC

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import base, benchmark

DATASETS = ("hmdb51", "ucf101")
NUM_SPLITS = 3


@dataclasses.dataclass(frozen=True)
class Splits:
    """An action dataset's classes and its splits.

    Attributes:
      classes: class names, in label order.
      labels: video id -> class index.
      train, test: per split, the video ids (sorted).
      unused: video ids listed only as 0 (HMDB).
    """

    classes: tuple[str, ...]
    labels: dict[str, int]
    train: tuple[tuple[str, ...], ...]
    test: tuple[tuple[str, ...], ...]
    unused: tuple[str, ...]


def _find(data_dir: Path, pattern: str) -> list[Path]:
    return sorted(p for p in data_dir.rglob(pattern) if p.is_file())


def read_hmdb_splits(data_dir: str | Path) -> Splits:
    """HMDB51's `<class>_test_split{1,2,3}.txt` files found under `data_dir`.

    Raises:
      ValueError: naming the file and line of a malformed line, or listing the
        split files a class lacks.
    """
    data_dir = Path(data_dir)
    files = _find(data_dir, "*_test_split[123].txt")
    if not files:
        raise ValueError(f"{data_dir}: no HMDB51 split file <class>_test_split1.txt under it")
    classes = sorted({p.name.rsplit("_test_split", 1)[0] for p in files})
    labels, train, test = {}, [set() for _ in range(NUM_SPLITS)], [set() for _ in range(NUM_SPLITS)]
    listed = set()
    for label, name in enumerate(classes):
        for split in range(NUM_SPLITS):
            path = next((p for p in files if p.name == f"{name}_test_split{split + 1}.txt"), None)
            if path is None:
                raise ValueError(f"{data_dir}: class {name!r} has no {name}_test_split"
                                 f"{split + 1}.txt")
            for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not text.strip():
                    continue
                parts = text.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise ValueError(f"{path}: line {line}: expected '<video> <0|1|2>', got "
                                     f"{text!r}")
                vid = Path(parts[0]).stem
                if labels.setdefault(vid, label) != label:
                    raise ValueError(f"{path}: line {line}: video {vid} is also listed under "
                                     f"class {classes[labels[vid]]!r}")
                listed.add(vid)
                if parts[1] == "1":
                    train[split].add(vid)
                elif parts[1] == "2":
                    test[split].add(vid)
    used = set().union(*train, *test)
    return Splits(tuple(classes), {v: l for v, l in labels.items() if v in used},
                  tuple(tuple(sorted(s)) for s in train), tuple(tuple(sorted(s)) for s in test),
                  tuple(sorted(listed - used)))


def read_ucf_splits(data_dir: str | Path) -> Splits:
    """UCF101's `classInd.txt`, `trainlist0N.txt` and `testlist0N.txt` under `data_dir`.

    Raises:
      ValueError: naming the file and line of a malformed line or of a video
        whose class `classInd.txt` does not list.
    """
    data_dir = Path(data_dir)

    def one(name: str) -> Path:
        found = _find(data_dir, name)
        if not found:
            raise ValueError(f"{data_dir}: no UCF101 file {name} under it")
        return found[0]

    index_path = one("classInd.txt")
    classes = []
    for line, text in enumerate(index_path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        parts = text.split()
        if len(parts) != 2 or parts[0] != str(len(classes) + 1):
            raise ValueError(f"{index_path}: line {line}: expected '{len(classes) + 1} "
                             f"<Class>', got {text!r}")
        classes.append(parts[1])
    label_of = {c: i for i, c in enumerate(classes)}
    labels, train, test = {}, [], []
    for split in range(NUM_SPLITS):
        for kind, out in (("train", train), ("test", test)):
            path = one(f"{kind}list0{split + 1}.txt")
            ids = set()
            for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not text.strip():
                    continue
                name = text.split()[0]
                folder = name.split("/")[0] if "/" in name else ""
                if folder not in label_of:
                    raise ValueError(f"{path}: line {line}: class {folder!r} of {name!r} is "
                                     f"not in {index_path}")
                vid = Path(name).stem
                labels[vid] = label_of[folder]
                ids.add(vid)
            out.append(tuple(sorted(ids)))
    return Splits(tuple(classes), labels, tuple(train), tuple(test), ())


def svm_accuracy(train_windows: np.ndarray, train_labels: np.ndarray,
                 test_windows: np.ndarray, test_labels: np.ndarray,
                 c: float = 100.0) -> float:
    """Top-1 (percent) of the release's window SVM.

    Args:
      train_windows: [N_train, C, F] features of each training video's C windows.
      train_labels: int [N_train].
      test_windows: [N_test, C, F].
      test_labels: int [N_test].
      c: the SVM's C.

    Every window is a training sample with its video's label; a test video's
    prediction maximises the decision function summed over its windows.
    """
    n, windows, dim = train_windows.shape
    svm = LinearSVC(C=c, max_iter=10_000)
    svm.fit(train_windows.reshape(-1, dim), np.repeat(train_labels, windows))
    scores = svm.decision_function(test_windows.reshape(-1, dim))
    if scores.ndim == 1:  # two classes: one decision function, positive = classes_[1]
        scores = np.stack([-scores, scores], axis=1)
    summed = scores.reshape(len(test_windows), test_windows.shape[1], -1).sum(axis=1)
    predicted = svm.classes_[np.argmax(summed, axis=1)]
    return 100.0 * float(np.mean(predicted == test_labels))


def default_config() -> ml_collections.ConfigDict:
    """Keys of an action_recognition section (besides `type` and `every`)."""
    return benchmark.common_config(
        dataset="hmdb51",   # | "ucf101"
        num_clips=10,       # windows per video
        svm_c=100.0,
        splits=(1, 2, 3),
        zero_shot=True,     # also classify from the class names' text embeddings
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Linear (window SVM) and zero-shot action recognition; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.check_choice("dataset", DATASETS)
        if not s.splits or set(s.splits) - {1, 2, 3}:
            raise ValueError(f"config.evals.{self.name}.splits must be a subset of (1, 2, 3), "
                             f"got {s.splits}")
        reader = read_hmdb_splits if s.dataset == "hmdb51" else read_ucf_splits
        self.splits = reader(s.data_dir)
        self.video_sources, self.missing = self.sources({
            vid: dict(captions=benchmark.captions([], [], []), category=label,
                      category_name=self.splits.classes[label])
            for vid, label in self.splits.labels.items()})
        self.units = Units("video", num_clips=s.num_clips)

    def run(self, variables, step):
        s = self.settings
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False,
                                 average_clips=False)
        row_of = {vid: i for i, vid in enumerate(units["video_id"])}
        features = units["features" if "features" in units else "embedding"]
        labels = units["category"]
        mean_outputs = {k: v.mean(axis=1) for k, v in units.items()
                        if k not in base.METADATA_KEYS}
        names = self.embed_texts(variables, [benchmark.label_text(c) for c in self.splits.classes])
        zero_shot = np.argmax(self.method.similarity(names, mean_outputs), axis=0)
        metrics = {}
        for split in s.splits:
            train = [row_of[v] for v in self.splits.train[split - 1] if v in row_of]
            test = [row_of[v] for v in self.splits.test[split - 1] if v in row_of]
            if not train or not test:
                raise ValueError(f"config.evals.{self.name}: split {split} has "
                                 f"{len(train)} training and {len(test)} test videos embedded")
            metrics[f"top1/split{split}"] = svm_accuracy(
                features[train], labels[train], features[test], labels[test], s.svm_c)
            if s.zero_shot:
                metrics[f"zero_shot_top1/split{split}"] = 100.0 * float(
                    np.mean(zero_shot[test] == labels[test]))
        for key in ("top1", "zero_shot_top1"):
            values = [v for k, v in metrics.items() if k.startswith(f"{key}/")]
            if values:
                metrics[key] = float(np.mean(values))
        return metrics | converted.counts() | {
            "videos_unused": float(len(self.splits.unused)),
            "chance": 100.0 / len(self.splits.classes)}
