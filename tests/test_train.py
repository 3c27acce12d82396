"""The shared trainer end to end on the tiny lab: train, evaluate, checkpoint, resume.

The first test runs the README's main job (MIL-NCE, S3D-G from pixels) at tiny
size; the trainer's own promises (resume, NaN handling) are checked with the
feature tower, which compiles in seconds instead of minutes.
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from vtlearn import train
from vtlearn.config_defaults import evaluate_every, load_config
from vtlearn.config_defaults import use_lab_features
from vtlearn.data import sources

ROOT = pathlib.Path(__file__).parents[1]


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lab"))


def _config(lab_dir, features=False, eval_every=None, **train_overrides):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = lab_dir
    if features:
        use_lab_features(config)
    if eval_every is not None:
        evaluate_every(config, eval_every)
    config.train.update(train_overrides)
    return config


def _state(workdir, step):
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(f"{workdir}/checkpoints/{step}/state")


def _params(workdir, step):
    return _state(workdir, step)["params"]


@pytest.mark.slow
def test_train_evaluate_checkpoint(lab_dir, tmp_path):
    metrics = train.train_and_evaluate(_config(lab_dir), str(tmp_path))
    assert {"retrieval/t2v/R@10", "retrieval/v2t/MedR", "probe/top1"} <= set(metrics)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["split"] == "train"]
    assert [x["step"] for x in train_lines] == [2, 4]
    assert all(np.isfinite(x["loss"]) for x in train_lines)
    # Throughput is logged; its value is not checked (timings belong in benchmarks/).
    assert all("clips_per_second" in x for x in train_lines)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                  if p.name.isdigit()) == [2, 4]
    assert any((tmp_path / "tensorboard" / "train").iterdir())


@pytest.mark.slow
def test_resume_continues_like_uninterrupted_run(lab_dir, tmp_path, caplog):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(_config(lab_dir, True, eval_every=0), str(straight))
    train.train_and_evaluate(_config(lab_dir, True, eval_every=0, num_steps=2), str(split))
    with caplog.at_level("INFO"):
        train.train_and_evaluate(_config(lab_dir, True, eval_every=0), str(split))  # at 2
    # The data position came from its saved tf.data state, not from skipping.
    assert f"Data position restored from {split}/data_state/2/process_0-of-1" in caplog.text
    assert sorted(p.name for p in (split / "data_state").iterdir()) == ["2", "4"]
    a, b = _state(straight, 4), _state(split, 4)
    # Params, optimizer moments, BatchNorm statistics, step and RNG all agree.
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
    # Training moved the params and the statistics (the check above is not vacuous).
    init = _state(split, 2)
    assert not np.allclose(init["params"]["video"]["fc1"]["kernel"],
                           a["params"]["video"]["fc1"]["kernel"])
    assert not np.allclose(init["model_state"]["video"]["bn1"]["mean"],
                           a["model_state"]["video"]["bn1"]["mean"])


@pytest.mark.slow
def test_nonfinite_stops_and_keeps_last_good_checkpoint(lab_dir, tmp_path, monkeypatch):
    train.train_and_evaluate(_config(lab_dir, True, eval_every=0, num_steps=2), str(tmp_path))
    good = _params(tmp_path, 2)
    real = train.pipeline.iterate_train

    def poisoned(*args, **kwargs):  # a corrupt input: NaN features from step 3 on
        for batch in real(*args, **kwargs):
            yield dict(batch, features_2d=np.full_like(batch["features_2d"], np.nan))

    monkeypatch.setattr(train.pipeline, "iterate_train", poisoned)
    with pytest.raises(train.NonFiniteError,
                       match="NaN/Inf .*the checkpoint of step 2 is the last good state"):
        train.train_and_evaluate(_config(lab_dir, True, eval_every=0), str(tmp_path))
    with pytest.raises(train.NonFiniteError, match="no checkpoint was saved yet"):
        train.train_and_evaluate(_config(lab_dir, True, eval_every=0), str(tmp_path / "new"))
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2]
    jax.tree.map(np.testing.assert_array_equal, good, _params(tmp_path, 2))


@pytest.mark.slow
def test_init_at_llvm_level_1_gives_the_default_levels_bits(lab_dir, monkeypatch):
    # Init compiles at level 1 (its compile time: benchmarks/init_compile.py);
    # the variables every run starts from must not change with it. (The tests'
    # own XLA_FLAGS compile everything at level 0, which init then keeps.)
    from vtlearn import sharding

    assert train.init_compiler_options() is None
    monkeypatch.setenv("XLA_FLAGS", "")
    options = train.init_compiler_options()
    assert options == {"xla_backend_optimization_level": 1}
    trainer = train.Trainer(sources.resolve_data(_config(lab_dir)), sharding.make_mesh())
    spec = trainer.sample_spec
    fast = jax.jit(trainer._init_variables, static_argnums=0, compiler_options=options)(spec)
    default = jax.jit(trainer._init_variables, static_argnums=0,
                      compiler_options={"xla_backend_optimization_level": 3})(spec)
    leaves = jax.tree_util.tree_leaves_with_path(default)
    assert len(leaves) > 400
    for (path, want), got in zip(leaves, jax.tree.leaves(fast)):
        assert np.array_equal(np.asarray(got), np.asarray(want)), jax.tree_util.keystr(path)


def test_no_data_gives_one_clear_line():
    with pytest.raises(sources.NoDataError, match="--config.data.train_files"):
        sources.resolve_data(load_config(f"{ROOT}/configs/milnce_s3d.py"))


@pytest.mark.parametrize("key, value", [("keep_checkpoints", 0), ("num_steps", 0),
                                        ("log_every", 0), ("checkpoint_every", -1),
                                        ("batch_size", 12)])
def test_bad_train_settings_fail_before_anything_runs(lab_dir, tmp_path, key, value):
    config = _config(lab_dir, True, **{key: value})
    with pytest.raises(ValueError, match=f"config.train.{key}"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing written, nothing deleted


def test_a_bad_evaluation_setting_fails_before_training(lab_dir, tmp_path):
    config = _config(lab_dir, True)
    config.eval_batch_size = 12
    with pytest.raises(ValueError, match="config.eval_batch_size=12"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_sigterm_stops_the_run_and_reaches_the_handler_installed_before_it(tmp_path):
    """A comparison of runs (`vtlearn.compare`) learns of a SIGTERM its run caught."""
    import os
    import signal

    from vtlearn import checkpointing

    seen = []

    def outer(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, outer)
    try:
        ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1, every_steps=10)
        assert not ckpt.preempted(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert ckpt.preempted(2) and seen == [signal.SIGTERM]
        ckpt.close()
        assert signal.getsignal(signal.SIGTERM) is outer
    finally:
        signal.signal(signal.SIGTERM, previous)
