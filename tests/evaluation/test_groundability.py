"""Groundability metrics (Hessel et al. 2020) against scikit-learn and loops, and the evaluator."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vtlearn.evaluation import groundability


@pytest.mark.parametrize("n", [2, 3, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_intra_video_auc_is_sklearns_auc_of_aligned_against_mismatched_pairs(n, ties):
    rng = np.random.default_rng(n)
    s = rng.normal(size=(n, n))
    if ties:  # coarse values: many ties, which count one half
        s = np.round(s)
    expected = roc_auc_score(np.eye(n).ravel(), s.ravel())
    assert groundability.intra_video_auc(s) == pytest.approx(expected, abs=1e-12)


def test_intra_video_auc_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        groundability.intra_video_auc(np.ones((1, 1)))


def test_segment_auc_against_a_loop():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=(6, 6)), 1)
    got = groundability.segment_aucs(s)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        wins = [1.0 if s[j, j] > s[j, i] else 0.5 if s[j, j] == s[j, i] else 0.0
                for i in others]
        assert got[j] == pytest.approx(np.mean(wins))
    # Each caption's AUC is sklearn's AUC of its row with its own segment positive.
    for j in range(6):
        row = np.delete(s[j], j)
        labels = np.r_[1, np.zeros(5)]
        assert got[j] == pytest.approx(roc_auc_score(labels, np.r_[s[j, j], row]))


def test_per_video_wins():
    a = {"x": 0.9, "y": 0.5, "z": 0.6, "only_a": 1.0}
    b = {"x": 0.8, "y": 0.5, "z": 0.7, "only_b": 0.0}
    assert groundability.per_video_wins(a, b) == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="share no video"):
        groundability.per_video_wins({"a": 1.0}, {"b": 1.0})


def test_unigram_regression_finds_the_word_that_lowers_auc():
    rng = np.random.default_rng(0)
    segments, length = 400, 6
    ids = rng.integers(1, 20, (segments, length))
    ids[rng.random((segments, length)) < 0.3] = 0
    position = rng.random(segments)
    num_words = (ids != 0).sum(1)
    has_hello = (ids == 7).any(1)  # word 7 ("hello") predicts low AUC
    auc = 0.7 - 0.3 * has_hello + 0.05 * position + rng.normal(0, 0.02, segments)
    ols = groundability.unigram_regression(auc, ids, position, num_words, min_count=5)
    assert ols["words"][np.argmin(ols["coefficients"])] == 7
    assert ols["coefficients"][list(ols["words"]).index(7)] == pytest.approx(-0.3, abs=0.02)
    assert ols["p"] < 1e-6
    # Reference for the coefficients: numpy's least squares on the same design.
    present = np.zeros((segments, 20), bool)
    for s in range(segments):
        present[s, ids[s][ids[s] > 0]] = True
    design = np.column_stack([np.ones(segments), position, position ** 2, num_words,
                              present[:, ols["words"]]])
    coef = np.linalg.lstsq(design, auc, rcond=None)[0]
    np.testing.assert_allclose(ols["coefficients"], coef[4:], atol=1e-8)


def test_the_evaluator_scores_a_hessel_model_and_writes_its_analysis(tmp_path):
    import pathlib

    from vtlearn import sharding, train
    from vtlearn.config_defaults import load_config
    from vtlearn.data import sources
    from vtlearn.evaluation import build_evaluators

    root = pathlib.Path(__file__).parents[2]
    config = load_config(f"{root}/configs/hessel.py:tiny")
    config.data.lab_dir = str(tmp_path / "lab")
    config = sources.resolve_data(config)
    config.evals.groundability.min_word_count = 1
    trainer = train.Trainer(config, sharding.make_mesh())
    state = trainer.init_state()
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, tmp_path,
                                    ["groundability"]).values()
    result = evaluator.analyse(state)
    metrics = evaluator.run(state, 7)
    # Reference: each scored video's AUC from its windows, recomputed here.
    aucs = [auc for _, auc in result["videos"].values()]
    assert metrics["num_videos"] == len(aucs) >= 1
    assert metrics["mean_auc"] == pytest.approx(100 * np.mean(aucs))
    assert all(np.isfinite(v) for v in metrics.values())
    assert len(result["segments"]["auc"]) == len(result["segments"]["position"])
    folder = tmp_path / "artefacts/groundability"
    for name in ("categories.csv", "categories.png", "videos.png", "segments.png", "words.txt"):
        assert (folder / f"step_7_{name}").stat().st_size > 0, name
    rows = (folder / "step_7_categories.csv").read_text().splitlines()
    assert rows[0] == "category,videos,auc,reference" and len(rows) >= 2


def test_two_runs_compare_by_per_video_wins(tmp_path):
    import pathlib

    import vtlearn
    from vtlearn import train
    from vtlearn.config_defaults import load_config
    from vtlearn.evaluation import standalone

    root = pathlib.Path(__file__).parents[2]
    runs = []
    for name, categories in (("instructional", (0, 2)), ("all", ())):
        config = load_config(f"{root}/configs/hessel.py:tiny")
        config.data.update(lab_dir=str(tmp_path / "lab"), train_categories=categories)
        config.evals.groundability.every = 0
        config.evals.retrieval.every = 0
        train.train_and_evaluate(config, str(tmp_path / name))
        runs.append(str(tmp_path / name))
    result = groundability.compare_runs(*runs)
    a = standalone(vtlearn.load(runs[0]), "groundability")
    assert tuple(a.settings.instructional) == (0, 2)  # the lab flags its even categories
    assert result["videos"] >= 1 and 0 <= result["wins"] <= 1
    assert result["videos_instructional"] + result.get("videos_other", 0) == result["videos"]
    # A run against itself ties everywhere.
    assert groundability.compare_runs(runs[0], runs[0])["wins"] == 0.5
