"""Runs whose data and workdir live on a non-local filesystem (`vtlearn.fs`).

The filesystem is TensorFlow's in-memory one (`ram://`), which `tf.io.gfile`
ships and which serves URLs as GCS does: not a local folder, no directory
renames. No GCS emulator could stand in for `gs://` here: TensorFlow's GCS
client ignores the emulator variables (`STORAGE_EMULATOR_HOST`,
`CLOUD_STORAGE_EMULATOR_ENDPOINT`; tried with gcp-storage-emulator from pip)
and always calls www.googleapis.com. `ram://` is per process, so every run
here is in this test process.
"""

import json
import os
import pathlib
import uuid

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

import vtlearn
from vtlearn import checkpointing, fs, train
from vtlearn.config_defaults import load_config, use_lab_features
from vtlearn.evaluation import figures

ROOT = pathlib.Path(__file__).parents[1]


@pytest.fixture
def ram():
    """A fresh `ram://` folder."""
    return f"ram://vtlearn-test-{uuid.uuid4().hex[:8]}"


def test_paths_on_a_url_keep_their_scheme_and_round_trip(ram, tmp_path):
    assert fs.join(ram, "a", "b.txt") == f"{ram}/a/b.txt"
    assert fs.scheme("gs://bucket/x") == "gs" and fs.is_local(tmp_path)
    assert fs.absolute("gs://bucket/x") == "gs://bucket/x"
    fs.makedirs(fs.join(ram, "a"))
    for name in ("b.txt", "c.txt"):
        fs.write_text(fs.join(ram, "a", name), f"text of {name}\n")
    assert fs.glob(f"{ram}/a/*.txt") == [f"{ram}/a/b.txt", f"{ram}/a/c.txt"]
    assert fs.read_text(f"{ram}/a/c.txt") == "text of c.txt\n"
    assert sorted(fs.walk_files(ram)) == ["a/b.txt", "a/c.txt"]
    fs.copy(f"{ram}/a/b.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "text of b.txt\n"
    with fs.local_copy(f"{ram}/a/c.txt") as local:
        assert fs.is_local(local) and pathlib.Path(local).read_text() == "text of c.txt\n"
    assert not os.path.exists(local)
    fs.write_text(f"{ram}/a/c.txt", "short\n")  # over a longer file: nothing of it is left
    assert fs.read_text(f"{ram}/a/c.txt") == "short\n"
    with fs.open(f"{ram}/a/b.txt", "a") as f:
        f.write("more\n")
    assert fs.read_text(f"{ram}/a/b.txt") == "text of b.txt\nmore\n"
    fig = figures.pyplot().figure()
    figures.save(fig, f"{ram}/figure.png")
    assert fs.read_bytes(f"{ram}/figure.png")[:4] == b"\x89PNG"


def _config(lab_dir, num_steps=4):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = lab_dir
    use_lab_features(config)
    config.evals.probe.every = 0
    config.evals.retrieval.every = 4
    config.train.update(num_steps=num_steps, checkpoint_every=2)
    return config


def _restored(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                           "state"))


def test_a_run_with_lab_and_workdir_on_ram_trains_checkpoints_and_resumes(
        ram, tmp_path, monkeypatch):
    monkeypatch.setenv("VTLEARN_CHECKPOINT_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.chdir(tmp_path)  # a URL folded into a local path would land here
    lab_dir, workdir = f"{ram}/lab", f"{ram}/run"
    train.train_and_evaluate(_config(lab_dir, num_steps=2), workdir)
    metrics = train.train_and_evaluate(_config(lab_dir), workdir)  # resumes at step 2
    assert "retrieval/t2v/R@10" in metrics
    assert not any(p.name.startswith("ram") for p in tmp_path.iterdir())

    # The lab, written to the URL with lab.json last.
    (lab,) = [d for d in tf.io.gfile.listdir(lab_dir) if not d.startswith(".")]
    assert fs.exists(f"{lab_dir}/{lab.rstrip('/')}/lab.json")
    assert fs.glob(f"{lab_dir}/*/train-*.tfrecord")
    # The workdir: config, vocabulary, metrics (steps 2 and 4 once each), events,
    # and both checkpoints copied whole.
    assert json.loads(fs.read_text(f"{workdir}/config.json"))["train"]["num_steps"] == 4
    assert fs.read_text(f"{workdir}/vocab.txt").split("\n")[0]
    rows = [json.loads(x) for x in fs.read_text(f"{workdir}/metrics.jsonl").splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [2, 4]
    assert fs.glob(f"{workdir}/tensorboard/train/events.out.tfevents.*")
    assert fs.listdir(f"{workdir}/checkpoints") == ["2", "4"]
    assert all(fs.exists(f"{workdir}/checkpoints/{s}/{checkpointing.COPIED}") for s in (2, 4))

    # The resumed run equals an uninterrupted local one.
    straight = tmp_path / "straight"
    train.train_and_evaluate(_config(lab_dir), str(straight))
    copied = tmp_path / "copied"
    for name in fs.walk_files(f"{workdir}/checkpoints/4"):
        os.makedirs((copied / name).parent, exist_ok=True)
        fs.copy(f"{workdir}/checkpoints/4/{name}", copied / name)
    a, b = _restored(straight, 4), ocp.StandardCheckpointer().restore(copied / "state")
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)

    # A later process (here: a fresh mirror) loads the model from the URL alone.
    monkeypatch.setenv("VTLEARN_CHECKPOINT_MIRROR", str(tmp_path / "other_mirror"))
    model = vtlearn.load(workdir)
    assert model.step == 4
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(model.params), b["params"])


def test_a_checkpoint_copied_in_part_is_not_restored(ram, tmp_path, monkeypatch):
    """A copy cut short (no COPIED marker) is passed over: the run resumes from
    the last whole one."""
    monkeypatch.setenv("VTLEARN_CHECKPOINT_MIRROR", str(tmp_path / "mirror"))
    state = {"w": np.arange(4.0)}
    ckpt = checkpointing.Checkpointer(f"{ram}/run", keep=3)
    for step in (1, 2):
        ckpt.save(step, jax.tree.map(lambda x: x * step, state), {"positions": [step]})
    ckpt.close()
    fs.remove(f"{ram}/run/checkpoints/2/{checkpointing.COPIED}")
    reopened = checkpointing.Checkpointer(f"{ram}/run", keep=3)
    try:
        assert reopened.latest_step == 1
        restored, data = reopened.restore(jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state))
        np.testing.assert_array_equal(restored["w"], state["w"])
        assert data == {"positions": [1]}
    finally:
        reopened.close()
