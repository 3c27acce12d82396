"""Online k-means and the cluster-prediction losses against scikit-learn and NumPy loops."""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans

from vtlearn.losses import clustering


def blobs(n=300, d=6, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float64)


def test_kmeans_matches_scikit_learn_from_the_same_initial_centroids():
    jax.config.update("jax_enable_x64", True)
    try:
        points = blobs()
        init = points[[0, 50, 100, 150, 200]].copy()
        ours = clustering.kmeans(points, np.ones(len(points), bool), init, iterations=100)
        ref = KMeans(5, init=init, n_init=1, max_iter=100, tol=0.0,
                     algorithm="lloyd").fit(points)
        np.testing.assert_array_equal(ours.assignment, ref.labels_)
        np.testing.assert_allclose(ours.inertia, ref.inertia_, rtol=1e-10)
        np.testing.assert_allclose(ours.centroids, ref.cluster_centers_, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_invalid_points_take_no_part():
    points = blobs(n=120).astype(np.float32)
    valid = np.arange(120) % 3 != 0
    init = points[[1, 2, 4, 5, 7]]
    masked = clustering.kmeans(points, valid, init, iterations=20)
    subset = clustering.kmeans(points[valid], np.ones(valid.sum(), bool), init, iterations=20)
    np.testing.assert_allclose(masked.centroids, subset.centroids, rtol=1e-5)
    np.testing.assert_allclose(masked.inertia, subset.inertia, rtol=1e-5)


def lloyd_loop(points, centroids, metric, empty_clusters):
    """One assignment + update written point by point."""
    k = len(centroids)
    labels = []
    for x in points:
        if metric == "euclidean":
            scores = [-np.sum((x - c) ** 2) for c in centroids]
        else:
            scores = [x @ c / max(np.linalg.norm(x) * np.linalg.norm(c), 1e-30)
                      if np.linalg.norm(c) > 0 else 0.0 for c in centroids]
        labels.append(int(np.argmax(scores)))
    empties = [j for j in range(k) if j not in labels]
    if empty_clusters == "farthest":  # j-th empty cluster takes the j-th farthest point
        distance = [np.sum((x - centroids[lab]) ** 2) for x, lab in zip(points, labels)]
        for j, p in zip(empties, np.argsort(distance)[::-1]):
            labels[p] = j
    new = []
    for j in range(k):
        members = [x for x, lab in zip(points, labels) if lab == j]
        if members:
            new.append(np.mean(members, axis=0))
        else:
            new.append(np.zeros_like(centroids[j]) if empty_clusters == "zero"
                       else centroids[j])
    return np.array(new), len(empties)


@pytest.mark.parametrize("metric,empty_clusters", [
    ("euclidean", "farthest"), ("euclidean", "keep"), ("cosine", "zero"),
    ("cosine", "farthest")])
def test_a_lloyd_step_matches_the_loop_and_empty_clusters_are_never_nan(metric, empty_clusters):
    points = blobs(n=40, d=3, k=2, seed=3).astype(np.float32)
    far = np.full((1, 3), 1e3, np.float32) * (1 if metric == "euclidean" else -1)
    centroids = np.concatenate([points[:2], far, far * 2])  # 2 never win
    new, empty = clustering.lloyd_step(points, np.ones(40, bool), centroids, metric,
                                       empty_clusters)
    ref, ref_empty = lloyd_loop(points, centroids, metric, empty_clusters)
    np.testing.assert_allclose(new, ref, rtol=1e-5, atol=1e-5)
    assert int(empty) == ref_empty >= 1 and np.all(np.isfinite(new))


def test_empty_clusters_are_relocated_as_scikit_learn_does():
    jax.config.update("jax_enable_x64", True)
    try:
        points = blobs(n=200, d=4, k=3, seed=7)
        init = np.concatenate([points[:3], np.full((3, 4), 50.0)])  # 3 start empty
        ours = clustering.kmeans(points, np.ones(200, bool), init, iterations=100)
        ref = KMeans(6, init=init, n_init=1, max_iter=100, tol=0.0,
                     algorithm="lloyd").fit(points)
        np.testing.assert_array_equal(ours.assignment, ref.labels_)
        np.testing.assert_allclose(ours.inertia, ref.inertia_, rtol=1e-10)
        assert len(np.unique(ours.assignment)) == 6
    finally:
        jax.config.update("jax_enable_x64", False)


def test_init_centroids_picks_valid_points_and_repeats_them_when_too_few():
    points = np.arange(20, dtype=np.float32).reshape(10, 2)
    valid = np.zeros(10, bool)
    valid[[2, 5, 7]] = True
    picked = np.asarray(clustering.init_centroids(points, valid, 5, jax.random.PRNGKey(0)))
    rows = {tuple(r) for r in points[valid]}
    assert all(tuple(r) in rows for r in picked)
    assert {tuple(r) for r in picked} == rows  # every valid point is used before repeats
    distinct = np.asarray(clustering.init_centroids(points, np.ones(10, bool), 6,
                                                    jax.random.PRNGKey(1)))
    assert len({tuple(r) for r in distinct}) == 6


def test_centroid_contrastive_matches_eq_6():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    mu = rng.normal(size=(5, 4)).astype(np.float32)
    target = rng.integers(0, 5, 7).astype(np.int32)
    mask = np.array([1, 1, 1, 0, 1, 1, 0], bool)
    expected = -np.mean([
        np.log(np.exp(x[i] @ mu[target[i]] - 0.3) / sum(np.exp(x[i] @ m) for m in mu))
        for i in range(7) if mask[i]])
    np.testing.assert_allclose(clustering.centroid_contrastive(x, mu, target, 0.3, mask),
                               expected, rtol=1e-5)


def test_cross_entropy_with_hard_and_soft_labels():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    hard = np.array([0, 2, 1, 2], np.int32)
    mask = np.array([1, 0, 1, 1], bool)
    np.testing.assert_allclose(clustering.cross_entropy(logits, hard, mask),
                               -np.mean([log_p[i, hard[i]] for i in (0, 2, 3)]), rtol=1e-5)
    soft = rng.dirichlet(np.ones(3), 4).astype(np.float32)
    np.testing.assert_allclose(clustering.cross_entropy(logits, soft, mask),
                               -np.mean([soft[i] @ log_p[i] for i in (0, 2, 3)]), rtol=1e-5)


def test_sinkhorn_knopp_matches_the_alternating_normalisation_and_equipartitions():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(12, 4)).astype(np.float32)
    mask = np.ones(12, bool)
    mask[[3, 8]] = False
    q = np.exp(logits[mask].astype(np.float64) / 0.5)
    for _ in range(50):
        q /= q.sum(0, keepdims=True) * 4
        q /= q.sum(1, keepdims=True) * mask.sum()
    q *= mask.sum()
    got = np.asarray(clustering.sinkhorn_knopp(logits, mask, epsilon=0.5, iterations=50))
    np.testing.assert_allclose(got[mask], q, rtol=1e-4)
    assert np.all(got[~mask] == 0)
    np.testing.assert_allclose(got[mask].sum(1), 1.0, rtol=1e-5)  # each row a distribution
    np.testing.assert_allclose(got.sum(0), mask.sum() / 4, rtol=1e-3)  # equal cluster mass
