"""Linear probe: a linear classifier trained on frozen features.

The "frozen" rows of MIL-NCE's Table 3 (HMDB/UCF) classify average-pooled
Mixed_5c features of the frozen backbone (§4.4); COIN (Table 4a) trains a
logistic regression on clip features. Here: features are
standardised (statistics of the training set), the regularisation strength C
is chosen by stratified cross-validation on the training set only, the model
is refit on the whole training set and scored once on the test set.

As an evaluator (`config.evals.<name>.type = "linear_probe"`): the probe
fits on the units of `train_files` (default `config.data.probe_files`) and
scores on those of `test_files` (default `config.data.eval_files`); units
are ground-truth segments labelled by step (`unit="segment"`) or whole
videos labelled by category (`unit="video"`: sliding windows averaged per
video, as HMDB/UCF clips are classified). It classifies the backbone
features a method returns ("features"), else its joint embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import ml_collections
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import base

Classifier = Literal["logistic", "linear_svm"]


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    classifier: Classifier = "logistic",
    c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    folds: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1 accuracy of a standardised linear classifier on frozen features.

    Args:
        train_features: [N_train, D].
        train_labels: int [N_train].
        test_features: [N_test, D].
        test_labels: int [N_test].
        classifier: "logistic" (multinomial logistic regression) or
            "linear_svm" (one-vs-rest linear SVM).
        c_grid: candidate inverse regularisation strengths.
        folds: cross-validation folds on the training set.
        seed: seed of the fold split.

    Returns:
        {"top1": test accuracy in percent, "chance": accuracy in percent of
        always predicting the most frequent training class, "C": chosen C}.
    """
    if classifier == "logistic":
        model = LogisticRegression(max_iter=2000)
    elif classifier == "linear_svm":
        model = LinearSVC(max_iter=20000)
    else:
        raise ValueError(f"classifier must be 'logistic' or 'linear_svm', got {classifier!r}")
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("model", model)]),
        {"model__C": list(c_grid)},
        scoring="accuracy",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    search.fit(np.asarray(train_features), np.asarray(train_labels))
    test_labels = np.asarray(test_labels)
    predictions = search.predict(np.asarray(test_features))
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    majority = values[np.argmax(counts)]
    return {
        "top1": 100.0 * float(np.mean(predictions == test_labels)),
        "chance": 100.0 * float(np.mean(test_labels == majority)),
        "C": float(search.best_params_["model__C"]),
    }


def default_config() -> ml_collections.ConfigDict:
    """Keys of a linear-probe section (besides `type` and `every`)."""
    return ml_collections.ConfigDict(dict(
        train_files="",  # "" = config.data.probe_files
        test_files="",   # "" = config.data.eval_files
        unit="segment",  # "segment" (step labels) | "video" (category labels)
        window_seconds=0.0,  # "video" units: window length; 0 = one clip's duration
        num_clips=0,     # clips per unit; 0 = data.eval_num_clips
        classifier="logistic",  # | "linear_svm"
        c_grid=(0.01, 0.1, 1.0, 10.0),
        folds=3,
    ))


class Evaluator(base.Evaluator):
    """A linear classifier on frozen features; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s, data = self.settings, self.config.data
        if s.classifier not in ("logistic", "linear_svm"):
            raise ValueError(f"config.evals.{self.name}.classifier must be 'logistic' or "
                             f"'linear_svm', got {s.classifier!r}")
        if s.unit == "segment":
            self.units = Units("segment", num_clips=s.num_clips)
        elif s.unit == "video":
            window = s.window_seconds or (data.num_frames / data.fps if data.video else 1.0)
            self.units = Units("window", num_clips=s.num_clips, window_seconds=window,
                               stride_seconds=window)
        else:
            raise ValueError(f"config.evals.{self.name}.unit must be 'segment' or 'video', "
                             f"got {s.unit!r}")
        self.train_pattern = self.files("train_files", "probe_files")
        self.test_pattern = self.files("test_files", "eval_files")

    def _embed(self, variables, pattern):
        units = self.embed_units(variables, pattern, self.units, with_text=False)
        if self.settings.unit == "video":
            units = base.pool_by_video(units)
            units["label"] = units["category"]
        key = "features" if "features" in units else "embedding"
        return units[key], units["label"]

    def run(self, variables, step):
        s = self.settings
        result = linear_probe(*self._embed(variables, self.train_pattern),
                              *self._embed(variables, self.test_pattern),
                              classifier=s.classifier, c_grid=tuple(s.c_grid), folds=s.folds)
        return {"top1": result["top1"], "chance": result["chance"]}
