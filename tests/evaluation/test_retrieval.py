"""Retrieval metrics vs a brute-force loop and hand-made cases."""

import numpy as np
import pytest

from vtlearn.evaluation import retrieval


def _loop_metrics(similarity):
    """R@1/5/10 (percent), MedR, MeanR; rank = 1 + #other items scoring >= correct."""
    ranks = []
    for i in range(similarity.shape[0]):
        rank = 1
        for j in range(similarity.shape[1]):
            if j != i and similarity[i, j] >= similarity[i, i]:
                rank += 1
        ranks.append(rank)
    ranks = sorted(ranks)
    n = len(ranks)
    median = ranks[n // 2] if n % 2 else (ranks[n // 2 - 1] + ranks[n // 2]) / 2
    out = {f"R@{k}": 100.0 * sum(r <= k for r in ranks) / n for k in (1, 5, 10)}
    out["MedR"] = median
    out["MeanR"] = sum(ranks) / n
    return out


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    similarity = rng.integers(0, 4, size=(25, 25)).astype(np.float32)  # many ties
    metrics = retrieval.text_video_retrieval_metrics(similarity)
    for prefix, matrix in (("t2v/", similarity), ("v2t/", similarity.T)):
        for key, value in _loop_metrics(matrix).items():
            assert metrics[prefix + key] == pytest.approx(value), prefix + key


def test_distractor_items():
    rng = np.random.default_rng(3)
    similarity = rng.standard_normal((12, 40))
    assert retrieval.retrieval_metrics(similarity) == pytest.approx(_loop_metrics(similarity))


def test_perfect_diagonal():
    metrics = retrieval.text_video_retrieval_metrics(np.eye(20) + 0.01)
    for direction in ("t2v/", "v2t/"):
        assert metrics[direction + "R@1"] == 100.0
        assert metrics[direction + "MedR"] == 1.0
        assert metrics[direction + "MeanR"] == 1.0


def test_ordered_items_and_pessimistic_ties():
    n = 10
    similarity = np.tile(np.arange(n, dtype=float), (n, 1))  # every query prefers item n-1
    t2v = retrieval.retrieval_metrics(similarity)
    # Query i's item has rank n - i: ranks 10, 9, ..., 1.
    assert t2v == pytest.approx({"R@1": 10.0, "R@5": 50.0, "R@10": 100.0,
                                 "MedR": 5.5, "MeanR": 5.5})
    # Transposed, every row is constant: all items tie, so every rank is n.
    v2t = retrieval.retrieval_metrics(similarity.T)
    assert v2t == pytest.approx({"R@1": 0.0, "R@5": 0.0, "R@10": 100.0,
                                 "MedR": 10.0, "MeanR": 10.0})


def test_worst_case():
    metrics = retrieval.retrieval_metrics(-np.eye(30))
    assert metrics["R@10"] == 0.0
    assert metrics["MedR"] == 30.0


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        retrieval.retrieval_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        retrieval.retrieval_metrics(np.zeros((5, 3)))
    with pytest.raises(ValueError):
        retrieval.text_video_retrieval_metrics(np.zeros((3, 5)))


def test_clip_averaged_similarity_matches_loop():
    rng = np.random.default_rng(4)
    text = rng.standard_normal((6, 8))
    video = rng.standard_normal((5, 4, 8))
    clip_mask = rng.random((5, 4)) < 0.5
    clip_mask[:, 0] = True
    got = retrieval.clip_averaged_similarity(text, video, clip_mask)
    for i in range(6):
        for j in range(5):
            scores = [text[i] @ video[j, c] for c in range(4) if clip_mask[j, c]]
            assert got[i, j] == pytest.approx(sum(scores) / len(scores))
    all_clips = retrieval.clip_averaged_similarity(text, video)
    np.testing.assert_allclose(all_clips, text @ video.mean(axis=1).T)
    with pytest.raises(ValueError):
        retrieval.clip_averaged_similarity(text, video, np.zeros((5, 4), bool))


def test_grouped_retrieval_reduces_to_indexed_with_distinct_texts():
    from vtlearn.evaluation.retrieval import grouped_retrieval_metrics

    sim = np.random.default_rng(3).normal(size=(12, 12))
    assert grouped_retrieval_metrics(sim, np.arange(12)) == retrieval.text_video_retrieval_metrics(sim)


def test_grouped_retrieval_brute_force():
    from vtlearn.evaluation.retrieval import grouped_retrieval_metrics

    rng = np.random.default_rng(4)
    groups = np.array([0, 1, 0, 2, 1, 0])
    text = rng.normal(size=(3, 4))[groups]  # equal texts embed equally
    sim = text @ rng.normal(size=(6, 4)).T
    t2v, v2t = [], []
    for g in range(3):
        order = list(np.argsort(-sim[np.argmax(groups == g)], kind="stable"))
        t2v.append(1 + min(order.index(j) for j in np.flatnonzero(groups == g)))
    for j in range(6):
        scores = {g: sim[np.argmax(groups == g), j] for g in range(3)}
        v2t.append(1 + sum(s > scores[groups[j]] for g, s in scores.items() if g != groups[j]))
    got = grouped_retrieval_metrics(sim, groups, recall_at=(1,))
    assert got["t2v/R@1"] == 100 * np.mean(np.array(t2v) <= 1)
    assert got["t2v/MeanR"] == np.mean(t2v) and got["v2t/MeanR"] == np.mean(v2t)


def test_grouped_chance_recall_matches_random_scores():
    """Closed form vs the mean of `grouped_retrieval_metrics` over random similarities."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 7, size=40)
    k = 5
    chance = retrieval.grouped_chance_recall(groups, k)
    trials = [retrieval.grouped_retrieval_metrics(rng.normal(size=(40, 40)), groups, (k,))
              for _ in range(2000)]
    for name in ("t2v", "v2t"):
        simulated = np.mean([t[f"{name}/R@{k}"] for t in trials])
        np.testing.assert_allclose(chance[f"{name}/R@{k}_chance"], simulated, atol=1.5)
    assert 0 < chance["t2v/R@5_chance"] < 100 and chance["v2t/R@5_chance"] == 100 * 5 / 7


def test_nan_similarities_never_score():
    # Under `>=` a NaN beats nothing, so NaN items used to rank first (R@1 = 100).
    similarity = np.full((4, 4), np.nan)
    with pytest.raises(ValueError, match="16 non-finite values"):
        retrieval.grouped_retrieval_metrics(similarity, np.arange(4))
    similarity = np.eye(4)
    similarity[2, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        retrieval.text_video_retrieval_metrics(similarity)


def test_multimodal_similarity_averages_the_chosen_outputs():
    from vtlearn.evaluation.retrieval import multimodal_similarity

    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 4))
    items = {"embedding": rng.normal(size=(5, 4)), "audio": rng.normal(size=(5, 4))}
    np.testing.assert_allclose(multimodal_similarity(q, items, ("embedding",)),
                               q @ items["embedding"].T)
    np.testing.assert_allclose(multimodal_similarity(q, items, ("embedding", "audio")),
                               (q @ items["embedding"].T + q @ items["audio"].T) / 2)
