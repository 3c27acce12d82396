"""`resolve_data` points a lab config at the lab's splits."""

import pathlib

from vtlearn.config_defaults import load_config
from vtlearn.data import lab, sources

ROOT = pathlib.Path(__file__).parents[2]


def test_lab_splits_feed_train_eval_and_probe(tmp_path):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = str(tmp_path)
    resolved = sources.resolve_data(config)
    ds = lab.generate_lab(lab.lab_config("tiny"), tmp_path)  # cached: same lab
    assert resolved.data.train_files.split(",") == [str(f) for f in ds.train_files]
    assert resolved.data.eval_files.split(",") == [str(f) for f in ds.test_files]
    # The probe fits on held-out labelled videos (val), never on pre-training data.
    assert resolved.data.probe_files.split(",") == [str(f) for f in ds.val_files]
    assert resolved.data.vocab_path == str(ds.vocab_path)


def test_lab_overrides_reach_the_generated_lab(tmp_path):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = str(tmp_path)
    config.lab.update(misaligned_fraction=0.5, step_seconds=(3.0, 4.0), feature_noise=1.5)
    resolved = sources.resolve_data(config)
    root = pathlib.Path(resolved.data.train_files.split(",")[0]).parent
    settings = lab.load_lab(root).metadata["settings"]
    assert settings["misaligned_fraction"] == 0.5
    assert tuple(settings["step_seconds"]) == (3.0, 4.0)
    assert settings["feature_noise"] == 1.5
    assert settings["chatter_prob"] == lab.lab_config("tiny").chatter_prob  # not overridden
