"""Using trained runs: vtlearn.load, the evaluate command, config checks on resume,
interrupted evaluations, and starting from another run's weights.

One tiny feature-tower run (4 steps, checkpoints at 2 and 4, retrieval at 4)
is shared by the tests that only read it; tests that resume copy it first.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import vtlearn
from vtlearn import api, checkpointing, run_config, train
from vtlearn.checkpointing import NoCheckpointError
from vtlearn.config_defaults import load_config, use_lab_features
from vtlearn.data import sources
from vtlearn.data.text import Vocabulary
from vtlearn.evaluation import retrieval
from vtlearn.methods import get_method

ROOT = pathlib.Path(__file__).parents[1]


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lab"))


def _config(lab_dir, **train_overrides):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = lab_dir
    use_lab_features(config)
    config.evals.probe.every = 0
    config.evals.retrieval.every = 4
    config.train.update(train_overrides)
    return config


@pytest.fixture(scope="module")
def run(lab_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    metrics = train.train_and_evaluate(_config(lab_dir), str(workdir))
    return workdir, metrics


def _copy(run, tmp_path):
    shutil.copytree(run[0], tmp_path / "run")
    return tmp_path / "run"


def _rows(workdir, split):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


def test_load_restores_a_run_from_its_workdir_alone(run):
    workdir, metrics = run
    handler = signal.getsignal(signal.SIGTERM)
    model = vtlearn.load(workdir)
    assert signal.getsignal(signal.SIGTERM) is handler  # the loader installs none
    assert model.step == 4 and vtlearn.load(workdir, step=2).step == 2
    saved = ocp.StandardCheckpointer().restore(workdir / "checkpoints/4/state")
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(model.params), saved["params"])
    # Raw text in, the method's embedding of its token ids out.
    texts = ["the circle spins", "move the square to the left", "zzz"]
    ids = Vocabulary.load(workdir / "vocab.txt").encode_batch(texts, model.config.data.max_words)
    expected = jax.jit(model.method.embed_text)(model.params, model.model_state, ids)
    np.testing.assert_allclose(model.embed_text(texts), expected, rtol=1e-5, atol=1e-6)
    features = {k: np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
                for k in ("features_2d", "features_3d")}
    video = model.embed_video(features)
    assert video.shape == (3, model.config.model.embedding_dim)
    np.testing.assert_allclose(model.similarity(model.embed_text(texts), video),
                               model.embed_text(texts) @ video.T, rtol=1e-5, atol=1e-6)
    # The loaded model evaluates to what the run logged at its last step.
    again = model.evaluate(["retrieval"])
    assert again.keys() == {k for k in metrics if k.startswith("retrieval/")}
    for key, value in again.items():
        assert value == pytest.approx(metrics[key], abs=1e-9), key


def test_alignment_view_of_any_saved_run(run, tmp_path):
    from vtlearn.evaluation import alignment_view

    path = alignment_view.write_alignment_view(run[0], tmp_path / "view.png", index=1)
    assert os.path.getsize(path) > 0
    assert not (run[0] / "artefacts").exists()  # the command writes only where it is told


def test_load_fails_clearly_without_a_run(run, tmp_path):
    with pytest.raises(NoCheckpointError, match="No checkpoint in"):
        vtlearn.load(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(NoCheckpointError, match=r"step 3 .*\[2, 4\]"):
        vtlearn.load(run[0], step=3)


def test_evaluate_command_evaluates_a_saved_run(run, tmp_path):
    workdir = _copy(run, tmp_path)
    before = len(_rows(workdir, "eval"))
    command = [sys.executable, "-m", "vtlearn.evaluate", f"--workdir={workdir}",
               "--evals=retrieval", "--set=evals.retrieval.recall_at=(1, 2)"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split("\t") for line in done.stdout.splitlines())
    assert "retrieval/t2v/R@2" in printed and "retrieval/t2v/R@10" not in printed
    rows = _rows(workdir, "eval")
    assert len(rows) == before + 1 and rows[-1]["step"] == 4
    assert float(printed["retrieval/t2v/MedR"]) == pytest.approx(rows[-1]["retrieval/t2v/MedR"],
                                                                 rel=1e-3)
    # An evaluator the run's config lacks joins with its defaults.
    added = subprocess.run(command[:4] + ["--evals=groundability"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    assert added.returncode == 0, added.stderr[-3000:]
    assert "groundability/num_videos" in added.stdout
    assert list((workdir / "artefacts/groundability").glob("step_4_*.png"))
    bad = subprocess.run(command[:4] + ["--set=evals.retrieval.nope=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert bad.returncode != 0 and "config has no key evals.retrieval.nope" in bad.stderr


@pytest.mark.parametrize("change, key", [
    (lambda c: c.loss.update(kind="nce"), "loss.kind"),
    (lambda c: c.train.update(batch_size=16), "train.batch_size"),
    (lambda c: c.model.update(embedding_dim=64), "model.embedding_dim"),
    (lambda c: c.update(method="vttwins"), "method"),
])
def test_resume_refuses_changes_that_would_corrupt_the_run(run, tmp_path, lab_dir, change, key):
    workdir = _copy(run, tmp_path)
    config = _config(lab_dir, num_steps=6)
    change(config)
    with pytest.raises(run_config.ConfigChangedError, match=rf"(?s)may not change.*  {key}: "):
        train.train_and_evaluate(config, str(workdir))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]


def test_a_checkpoint_that_does_not_fit_says_so_in_a_few_lines(run, tmp_path, lab_dir):
    workdir = _copy(run, tmp_path)
    (workdir / "config.json").unlink()  # as runs saved before configs were: no check
    config = _config(lab_dir, num_steps=6)
    config.model.embedding_dim = 64
    with pytest.raises(checkpointing.RestoreError) as error:
        train.train_and_evaluate(config, str(workdir))
    message = str(error.value)
    assert str(workdir / "checkpoints") in message and len(message) < 1000


def test_resume_refuses_a_reshuffled_vocabulary_of_the_same_size(run, tmp_path, lab_dir):
    workdir = _copy(run, tmp_path)
    words = list(Vocabulary.load(workdir / "vocab.txt").words)
    Vocabulary(words[1:] + words[:1]).save(tmp_path / "shuffled.txt")
    config = _config(lab_dir, num_steps=6)
    config.data.vocab_path = str(tmp_path / "shuffled.txt")
    with pytest.raises(run_config.ConfigChangedError, match="vocabulary"):
        train.train_and_evaluate(config, str(workdir))


def test_resume_accepts_more_steps_and_other_evaluation_settings(run, tmp_path, lab_dir):
    workdir = _copy(run, tmp_path)
    config = _config(lab_dir, num_steps=6, log_every=1)
    config.evals.retrieval.update(every=3, num_clips=1)
    metrics = train.train_and_evaluate(config, str(workdir))
    assert "retrieval/t2v/R@10" in metrics  # at the new last step, 6
    assert [row["step"] for row in _rows(workdir, "train")][-2:] == [5, 6]
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["train"]["num_steps"] == 6 and saved["evals"]["retrieval"]["num_clips"] == 1


@pytest.mark.parametrize("stop", ["killed during the evaluation", "SIGTERM in the last step"])
def test_an_interrupted_final_evaluation_runs_when_the_run_is_rerun(lab_dir, tmp_path,
                                                                   monkeypatch, stop):
    config = _config(lab_dir, num_steps=2)
    config.evals.retrieval.every = 2
    if stop == "killed during the evaluation":
        def killed(self, variables, step):
            raise KeyboardInterrupt

        monkeypatch.setattr(retrieval.Evaluator, "run", killed)
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config, str(tmp_path))
    else:  # the handler's flag, as SIGTERM sets it, is seen after the last step
        monkeypatch.setattr(checkpointing.Checkpointer, "preempted",
                            lambda self, step: step == 2)
        assert train.train_and_evaluate(config, str(tmp_path)) == {}
    assert (tmp_path / "checkpoints/2").is_dir() and not _rows(tmp_path, "eval")
    monkeypatch.undo()
    metrics = train.train_and_evaluate(config, str(tmp_path))  # finished: evaluates only
    assert "retrieval/t2v/R@10" in metrics
    assert [row["step"] for row in _rows(tmp_path, "eval")] == [2]
    assert [row["step"] for row in _rows(tmp_path, "train")] == [2]  # no step trained again
    assert train.train_and_evaluate(config, str(tmp_path)) == {}  # nothing left to do
    assert len(_rows(tmp_path, "eval")) == 1


def test_model_init_starts_from_another_runs_weights(run, lab_dir, tmp_path):
    workdir, _ = run
    config = _config(lab_dir, num_steps=2)
    config.model_init = str(workdir)
    config.seed = 7  # another random init, overwritten by the run's weights
    resolved = sources.resolve_data(config)
    trainer = train.Trainer(resolved, sharding_mesh())
    state = trainer.init_state(api.load_pretrained(str(workdir), resolved, trainer.method))
    source = vtlearn.load(workdir)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
                 jax.device_get(source.params))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.model_state),
                 jax.device_get(source.model_state))
    assert int(state.step) == 0  # a new run: fresh step and optimizer state
    assert train.train_and_evaluate(config, str(tmp_path / "b")) is not None
    assert (tmp_path / "b/checkpoints/2").is_dir()


def test_model_init_checks_vocabulary_and_shapes(run, lab_dir, tmp_path):
    workdir, _ = run
    config = sources.resolve_data(_config(lab_dir))
    words = list(Vocabulary.load(config.data.vocab_path).words)
    Vocabulary(words + ["extra"]).save(tmp_path / "bigger.txt")
    config.data.vocab_path = str(tmp_path / "bigger.txt")
    method = get_method("milnce")(config, 8)
    with pytest.raises(ValueError, match="config.model_init=.*another vocabulary"):
        api.load_pretrained(str(workdir), config, method)
    with pytest.raises(ValueError, match="s3d_dict.npy"):
        api.load_pretrained(str(tmp_path / "s3d_howto100m.pth"), config, method)
    hessel = load_config(f"{ROOT}/configs/hessel.py:tiny")
    hessel.data.lab_dir = lab_dir
    hessel = sources.resolve_data(hessel)
    with pytest.raises(ValueError, match="method 'hessel' reads no other weight files"):
        api.load_pretrained(str(tmp_path / "weights.pth"), hessel,
                            get_method("hessel")(hessel, 8))
    fresh = {"a": np.zeros((2, 3)), "b": np.zeros(4)}
    with pytest.raises(ValueError, match=r"1 pretrained leaves it lacks .*1 of another shape"):
        api.merge_pretrained(fresh, {"a": np.ones((3, 3)), "c": np.ones(1)})
    merged = api.merge_pretrained(fresh, {"a": np.ones((2, 3))})
    np.testing.assert_array_equal(merged["a"], 1)
    np.testing.assert_array_equal(merged["b"], 0)


def sharding_mesh():
    from vtlearn import sharding

    return sharding.make_mesh()


def test_word_vectors_are_read_when_a_run_starts_and_never_again(lab_dir, tmp_path):
    from gensim.models import KeyedVectors

    config = _config(lab_dir, num_steps=2)
    config.evals.retrieval.every = 0
    words = list(Vocabulary.load(sources.resolve_data(config).data.vocab_path).words)
    vectors = np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32)
    keyed = KeyedVectors(vector_size=8)
    keyed.add_vectors(words, vectors)
    keyed.save_word2vec_format(str(tmp_path / "vectors.bin"), binary=True)  # GoogleNews format
    config.model.text.update(word_dim=8, word2vec_path=str(tmp_path / "vectors.bin"),
                             freeze_word_embeddings=True)
    train.train_and_evaluate(config, str(tmp_path / "run"))
    (tmp_path / "vectors.bin").unlink()  # loading needs no training inputs
    table = vtlearn.load(tmp_path / "run").params["text"]["word_embd"]["embedding"]
    np.testing.assert_allclose(np.asarray(table)[1:], vectors, rtol=1e-6)  # frozen in training
    np.testing.assert_array_equal(np.asarray(table)[0], 0.0)


def test_a_damaged_latest_checkpoint_falls_back_and_metrics_are_not_repeated(run, tmp_path,
                                                                           lab_dir):
    workdir = _copy(run, tmp_path)
    damaged = [p for p in (workdir / "checkpoints/4/state").rglob("*") if p.is_file()]
    for path in damaged:  # as a crash or a full disk can leave them
        path.write_bytes(b"\0" * 7)
    train.train_and_evaluate(_config(lab_dir), str(workdir))  # 4 steps, as the run had
    assert (workdir / "checkpoints/damaged_4").is_dir()
    retrained = ocp.StandardCheckpointer().restore(workdir / "checkpoints/4/state")
    original = ocp.StandardCheckpointer().restore(run[0] / "checkpoints/4/state")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 retrained["params"], original["params"])
    # Step 4's rows were written once by the run and dropped when it resumed at 2.
    assert [row["step"] for row in _rows(workdir, "train")] == [2, 4]
    assert [row["step"] for row in _rows(workdir, "eval")] == [4]
