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
    config.lab.update(misaligned_fraction=0.5, step_seconds=(3.0, 4.0), feature_noise=1.5,
                      audio_noise=0.25)  # every LabConfig field can be set
    resolved = sources.resolve_data(config)
    root = pathlib.Path(resolved.data.train_files.split(",")[0]).parent
    settings = lab.load_lab(root).metadata["settings"]
    assert settings["misaligned_fraction"] == 0.5
    assert tuple(settings["step_seconds"]) == (3.0, 4.0)
    assert settings["feature_noise"] == 1.5
    assert settings["audio_noise"] == 0.25
    assert settings["chatter_prob"] == lab.lab_config("tiny").chatter_prob  # not overridden


def test_own_train_files_with_a_lab_preset_read_none_of_the_lab(tmp_path):
    """A preset keeps its sizes but no longer swaps the user's records for the lab's."""
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:local")
    config.data.lab_dir = str(tmp_path / "lab")
    config.data.update(train_files="/data/mine/train-*.tfrecord", vocab_path="/data/vocab.txt")
    resolved = sources.resolve_data(config)
    assert resolved.data.train_files == "/data/mine/train-*.tfrecord"
    assert resolved.data.vocab_path == "/data/vocab.txt"
    assert resolved.data.eval_files == "" and resolved.data.probe_files == ""
    assert resolved.data.eval_text_key == ""  # the ASR captions, not the lab's clean ones
    assert not (tmp_path / "lab").exists()  # no lab generated
    assert resolved.train.batch_size == config.train.batch_size


def test_the_lab_evaluates_on_its_clean_captions_unless_told_otherwise(tmp_path):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = str(tmp_path)
    assert sources.resolve_data(config).data.eval_text_key == "caption/clean_string"
    config.data.eval_text_key = "caption/string"
    assert sources.resolve_data(config).data.eval_text_key == "caption/string"
