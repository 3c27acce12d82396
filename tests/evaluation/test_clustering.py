"""Clustering metrics (MCN appendix B.2) on hand-computed cases and against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vtlearn.evaluation.clustering import (clustering_metrics, entropy_and_purity,
                                           hungarian_accuracy)


def test_perfect_clustering_up_to_renaming():
    labels = np.array([0, 0, 1, 1, 2, 2])
    m = clustering_metrics(labels, np.array([5, 5, 3, 3, 9, 9]))
    assert m == pytest.approx({"NMI": 100.0, "ARI": 100.0, "Acc": 100.0, "H": 0.0,
                               "p_max": 100.0})


def test_hand_computed_case():
    labels = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([0, 0, 1, 1, 1, 1])
    # Cluster 0 = {0, 0}: H 0, p_max 1. Cluster 1 = {0, 1, 1, 2}: p = (1/4, 1/2, 1/4),
    # H = -(2 · 1/4 ln 1/4 + 1/2 ln 1/2) = 1.5 ln 2, p_max 1/2.
    h, p = entropy_and_purity(labels, clusters)
    assert h == pytest.approx(0.75 * np.log(2)) and p == pytest.approx(75.0)
    # Best one-to-one matching: cluster 0 -> label 0 (2 hits), cluster 1 -> label 1 (2 hits).
    assert hungarian_accuracy(labels, clusters) == pytest.approx(100 * 4 / 6)
    m = clustering_metrics(labels, clusters)
    assert m["NMI"] == pytest.approx(100 * normalized_mutual_info_score(labels, clusters))
    assert m["ARI"] == pytest.approx(100 * adjusted_rand_score(labels, clusters))


def test_more_clusters_than_labels_leaves_some_unmatched():
    labels = np.array([0, 0, 1, 1])
    clusters = np.array([0, 1, 2, 3])  # 4 clusters, 2 labels: 2 points can be matched
    assert hungarian_accuracy(labels, clusters) == pytest.approx(50.0)
    h, p = entropy_and_purity(labels, clusters)
    assert h == 0.0 and p == 100.0  # singletons are pure


def test_bad_shapes_fail():
    with pytest.raises(ValueError, match="equally many"):
        clustering_metrics(np.zeros(3), np.zeros(4))
