"""Evaluator plug-ins and the shared embedding pass, on the tiny lab with the feature tower.

The method is initialised, not trained: these tests check the machinery
(registry, unit metadata, batching, the method's similarity), not scores.
"""

import pathlib

import jax
import numpy as np
import pytest

from vtlearn import sharding, train
from vtlearn.config_defaults import load_config, use_lab_features
from vtlearn.data import pipeline, sources
from vtlearn.data.text import Vocabulary
from vtlearn.evaluation import base, build_evaluators

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def setup(feature_run):
    return feature_run


def test_embedding_pass_keeps_every_unit_and_its_metadata(setup):
    config, trainer, state = setup
    units = base.embed_units(trainer.method, state, trainer.mesh, config.data,
                             config.data.eval_files, pipeline.Units("caption"), batch_size=8)
    # Reference: the same units straight from the pipeline, in the same order.
    batches = list(pipeline.iterate_eval(config.data, 8, pipeline.Units("caption")))
    valid = np.concatenate([b["valid"] for b in batches])
    ids = np.concatenate([b["text"][:, 0] for b in batches])[valid]
    np.testing.assert_array_equal(units["text_ids"], ids)
    np.testing.assert_array_equal(
        units["video_id"], [v.decode() for v in np.concatenate([b["video_id"] for b in
                                                                batches])[valid]])
    np.testing.assert_allclose(units["start"],
                               np.concatenate([b["start"] for b in batches])[valid])
    assert len(units["embedding"]) == len(ids) > 8  # more than one batch, last one padded
    # Clip embeddings are averaged over each unit's C clips.
    batch = batches[0]
    clips = {k: batch[k][0] for k in ("features_2d", "features_3d")}
    direct = jax.jit(trainer.method.embed_video)(state.params, state.model_state, clips)
    np.testing.assert_allclose(units["embedding"][0], np.asarray(direct["embedding"]).mean(0),
                               rtol=1e-5, atol=1e-6)
    text = jax.jit(trainer.method.embed_text)(state.params, state.model_state, ids[:3])
    np.testing.assert_allclose(units["text"][:3], text, rtol=1e-5, atol=1e-6)


def test_a_long_embedding_pass_logs_its_progress(setup, monkeypatch, caplog):
    config, trainer, state = setup
    monkeypatch.setattr(base, "PROGRESS_SECONDS", 0.0)  # every batch counts as long
    with caplog.at_level("INFO"):
        units = base.embed_units(trainer.method, state, trainer.mesh, config.data,
                                 config.data.eval_files, pipeline.Units("caption"), batch_size=8)
    lines = [r.getMessage() for r in caplog.records if "embedded" in r.getMessage()]
    assert len(lines) >= 2 and f"embedded {len(units['embedding'])} caption units" in lines[-1]


def test_outside_texts_embed_in_padded_batches(setup):
    config, trainer, state = setup
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None,
                                    ["retrieval"]).values()
    texts = ["spin the circle", "move the square left", "", "a b c", "circle", "square",
             "spin", "left", "right", "up", "down"]  # 11: two batches of 8, padded
    got = evaluator.embed_texts(state, texts)
    ids = Vocabulary.load(config.data.vocab_path).encode_batch(texts, config.data.max_words)
    expected = jax.jit(trainer.method.embed_text)(state.params, state.model_state, ids)
    assert got.shape == (11, config.model.embedding_dim)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_retrieval_scores_with_the_methods_similarity(setup, monkeypatch):
    config, trainer, state = setup
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None,
                                    ["retrieval"]).values()
    plain = evaluator.run(state, 0)
    assert plain["t2v/R@1"] < 100
    units = {}

    def oracle(text, video):  # 1 where the unit's own caption text is the query's
        ids = units.setdefault("ids", evaluator.embed_units(state, evaluator.pattern,
                                                            evaluator.units)["text_ids"])
        return (ids[:, None] == ids[None]).all(-1).astype(float)

    monkeypatch.setattr(trainer.method, "similarity", oracle)
    perfect = evaluator.run(state, 0)
    assert perfect["t2v/R@1"] == 100 and perfect["v2t/R@1"] == 100


def test_video_pooling_against_a_loop():
    rng = np.random.default_rng(0)
    ids = np.array(["b", "a", "b", "c", "a", "b"])
    units = {"video_id": ids, "category": np.array([2, 1, 2, 3, 1, 2]),
             "embedding": rng.normal(size=(6, 4)).astype(np.float32)}
    pooled = base.pool_by_video(units)
    np.testing.assert_array_equal(pooled["video_id"], ["b", "a", "c"])  # first appearance
    np.testing.assert_array_equal(pooled["category"], [2, 1, 3])
    for i, video in enumerate(["b", "a", "c"]):
        np.testing.assert_allclose(pooled["embedding"][i],
                                   units["embedding"][ids == video].mean(0), rtol=1e-6)
    assert "features" not in pooled


def test_probe_on_whole_videos_with_an_svm(setup):
    config, trainer, state = setup
    config = config.copy_and_resolve_references()
    # The tiny lab's val split has too few videos per category for folds.
    config.evals.probe.update(unit="video", classifier="linear_svm", folds=2,
                              train_files=config.data.train_files)
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None,
                                    ["probe"]).values()
    metrics = evaluator.run(state, 0)
    assert set(metrics) == {"top1", "chance"} and 0 <= metrics["top1"] <= 100


@pytest.mark.parametrize("key, value, message", [
    ("type", "nope", r"config.evals.retrieval.type='nope' names no plug-in.*built in: "
                     r"action_recognition, alignment_view, clustering, coin, crosstask, groundability, "
                     r"linear_probe, mining_youtube, msrvtt, retrieval, youcook2, "
                     r"youtube8m_segments$"),
    ("files", "/nowhere/*.tfrecord", r"config.evals.retrieval.files .*matches no file"),
])
def test_bad_evaluator_settings_fail_when_built(setup, key, value, message):
    config, trainer, _ = setup
    config = config.copy_and_resolve_references()
    config.evals.retrieval[key] = value
    with pytest.raises(ValueError, match=message):
        build_evaluators(trainer.method, trainer.mesh, config)


def test_probe_rejects_an_unknown_classifier(setup):
    config, trainer, _ = setup
    config = config.copy_and_resolve_references()
    config.evals.probe.classifier = "forest"
    with pytest.raises(ValueError, match="config.evals.probe.classifier"):
        build_evaluators(trainer.method, trainer.mesh, config)


CUSTOM_EVALUATOR = '''
import ml_collections
import numpy as np

from vtlearn import fs
from vtlearn.data.pipeline import Units
from vtlearn.evaluation import base


def default_config():
    return ml_collections.ConfigDict(dict(files=""))


class Evaluator(base.Evaluator):
    """Counts segments and writes their mean embedding norm as an artefact."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pattern = self.files("files", "eval_files")

    def run(self, variables, step):
        units = self.embed_units(variables, self.pattern, Units("segment"), with_text=False)
        path = self.artefact_path(step, "norms.txt")
        norm = float(np.linalg.norm(units["embedding"], axis=1).mean())
        fs.write_text(path, str(norm))  # any filesystem the workdir is on
        return {"segments": float(len(units["label"])), "norm": norm}
'''


def test_a_new_evaluator_is_one_module(setup, tmp_path, monkeypatch):
    config, trainer, state = setup
    (tmp_path / "my_lab").mkdir()
    (tmp_path / "my_lab/__init__.py").write_text("")
    (tmp_path / "my_lab/segment_norms.py").write_text(CUSTOM_EVALUATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = config.copy_and_resolve_references()
    config.evals.segments = base.section("my_lab.segment_norms", every=2)
    metrics = train.run_evaluations(
        build_evaluators(trainer.method, trainer.mesh, config, tmp_path, ["segments"]),
        state, 3, _NullWriter())
    assert metrics["segments/segments"] > 0
    written = (tmp_path / "artefacts/segments/step_3_norms.txt").read_text()
    assert float(written) == pytest.approx(metrics["segments/norm"])


class _NullWriter:
    def write(self, *args):
        pass


@pytest.mark.parametrize("config_name", ["vttwins_s3d", "milnce_s3d"])
def test_alignment_view_evaluator_writes_the_figure_for_any_method(setup, tmp_path,
                                                                   config_name):
    from PIL import Image

    from vtlearn.evaluation import alignment_view

    config = load_config(f"{ROOT}/configs/{config_name}.py:tiny")
    config.data.lab_dir = setup[0].data.lab_dir
    use_lab_features(config)
    config = sources.resolve_data(config)
    if "alignment" not in config.evals:  # MIL-NCE configs have none: add one
        config.evals.alignment = base.section("alignment_view", every=4, num_pairs=3)
    trainer = train.Trainer(config, sharding.make_mesh())
    state = trainer.init_state()
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, tmp_path,
                                    ["alignment"]).values()
    metrics = evaluator.run(state, 5)
    matrices, details = evaluator.alignment(state)
    n = len(details["captions_text"])
    assert 1 <= n <= evaluator.num_pairs and matrices["s2dtw"].shape == (n, n)
    assert metrics["skipped_captions"] == np.sum(matrices["s2dtw"].sum(0) < 0.5)
    # The lab's records carry ground truth; features runs show no frames.
    assert details["truth"].shape == (n, n) and details["relevant"].shape == (n,)
    assert not details["truth"][:, ~details["relevant"]].any()  # chatter matches no clip
    assert "frames" not in details
    image = Image.open(tmp_path / "artefacts/alignment/step_5_alignment.png")
    assert image.size == alignment_view.render_alignment_png(matrices, tmp_path / "a.png",
                                                             **details)


def test_the_loss_receives_the_training_step(setup, monkeypatch):
    config, trainer, _ = setup
    trainer = train.Trainer(config, trainer.mesh)
    original = trainer.method.loss

    def loss(params, state, batch, rng, step):
        value, (state, metrics) = original(params, state, batch, rng, step)
        return value, (state, dict(metrics, seen_step=step))

    monkeypatch.setattr(trainer.method, "loss", loss)
    state = trainer.init_state()
    batch = next(pipeline.iterate_train(config.data, config.train.batch_size))
    batch = sharding.global_batch({k: v for k, v in batch.items() if k != "index"},
                                  trainer.mesh)
    seen = []
    for _ in range(2):
        state, metrics = trainer.train_step(state, batch)
        seen.append(int(metrics["seen_step"]))
    assert seen == [0, 1]


def test_a_nan_feature_in_evaluation_data_names_its_video(setup, tmp_path):
    from vtlearn.data import records
    from vtlearn.data import schema as S

    config, trainer, state = setup
    features = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    features[7, 3] = np.nan  # second 7 of the video
    video = S.Video("nanvid", 20.0, S.Captions([], np.zeros(0), np.zeros(0)),
                    features_2d=features, features_3d=features, feature_rate=1.0)
    records.write_tfrecord(tmp_path / "bad.tfrecord", records.video_to_examples(video, 10.0))
    units = pipeline.Units("window", num_clips=1, window_seconds=2.0, stride_seconds=2.0)
    # Bad input is caught as it is read, naming the file, record, video and chunk.
    with pytest.raises(records.RecordError, match=(
            r"bad.tfrecord: record 0 is not a valid vtlearn chunk: FEATURES/2d/floats holds "
            r"NaN or Inf \(video nanvid, chunk at 0 s\)$")):
        base.embed_units(trainer.method, state, trainer.mesh, config.data,
                         str(tmp_path / "bad.tfrecord"), units, batch_size=8, with_text=False)
    # Embeddings a model turns non-finite are refused too, naming the units.
    embedded = {"embedding": np.ones((3, 4), np.float32), "video_id": np.array(["a", "b", "c"]),
                "start": np.array([0.0, 2.0, 4.0]), "end": np.array([2.0, 4.0, 6.0])}
    embedded["embedding"][1, 2] = np.inf
    with pytest.raises(ValueError, match=r"1 evaluation unit\(s\) .* video b at 2.0-4.0 s"):
        base._check_finite(embedded, "files")
