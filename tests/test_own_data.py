"""The README's 'Training on your own data' walkthrough, command for command.

Videos a user might have (small MP4s written here with PyAV) and their
captions go through `convert videos`, `convert vocab`, training with a
preset's sizes on those records (`vtlearn.main`), and `vtlearn.evaluate`:
each step in its own process, as a user runs them.
"""

import fractions
import json
import os
import pathlib
import subprocess
import sys

import av
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parents[1]
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 230)}
MOTIONS = ("left", "right")


def _write_video(path, colour, motion, seconds=4.0, fps=10, size=(64, 48)):
    """A square of `colour` moving `motion` over a gray background."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, fps)
        for i in range(int(seconds * fps)):
            frame = np.full((height, width, 3), 120, np.uint8)
            x = (2 * i if motion == "right" else width - 16 - 2 * i) % (width - 16)
            frame[16:32, x:x + 16] = COLOURS[colour]
            image = av.VideoFrame.from_ndarray(frame, format="rgb24")
            image.pts = i
            container.mux(stream.encode(image))
        container.mux(stream.encode())


def _videos(directory, names):
    """Writes the videos and returns their HowTo100M-style caption JSON."""
    directory.mkdir(parents=True)
    captions = {}
    for name in names:
        colour, motion = name.split("_")[:2]
        _write_video(directory / f"{name}.mp4", colour, motion)
        captions[name] = {"start": [0.0, 2.0], "end": [2.0, 4.0],
                          "text": [f"the {colour} square moves {motion}",
                                   f"now {colour} goes {motion} again"]}
    return captions


def _run(*args, env, expect_ok=True):
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    if expect_ok:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_convert_vocabulary_train_evaluate_on_own_videos(tmp_path):
    env = dict(os.environ, VTLEARN_COMPILATION_CACHE=str(tmp_path / "jax_cache"),
               VTLEARN_DATA_DIR=str(tmp_path / "lab_cache"))
    train_names = [f"{c}_{m}_{i}" for c in COLOURS for m in MOTIONS for i in range(2)]
    val_names = [f"{c}_{m}_val" for c in COLOURS for m in MOTIONS]
    for split, names in (("train", train_names), ("val", val_names)):
        captions = _videos(tmp_path / "videos" / split, names)
        (tmp_path / f"{split}.json").write_text(json.dumps(captions))
        _run("vtlearn.data.convert", "videos", "--video_dir", str(tmp_path / "videos" / split),
             "--captions", str(tmp_path / f"{split}.json"),
             "--out_prefix", str(tmp_path / "records" / split), "--num_shards", "2",
             "--fps", "5", "--short_side", "40", "--sample_rate", "0", env=env)
        summary = json.loads((tmp_path / "records" / f"{split}.summary.json").read_text())
        assert summary["counts"]["converted"] == len(names) and not summary["failed"]
    vocab = tmp_path / "records" / "vocab.txt"
    _run("vtlearn.data.convert", "vocab", "--records",
         str(tmp_path / "records" / "train-*.tfrecord"), "--out", str(vocab), env=env)
    assert {"red", "square", "moves", "left", "again"} <= set(vocab.read_text().split())

    workdir = tmp_path / "run"
    command = ["vtlearn.main", "--config=configs/milnce_s3d.py:tiny", f"--workdir={workdir}",
               f"--config.data.train_files={tmp_path}/records/train-*.tfrecord",
               f"--config.data.eval_files={tmp_path}/records/val-*.tfrecord",
               f"--config.data.vocab_path={vocab}"]
    # No probe records given: the run stops before training and says what to set.
    stopped = _run(*command, env=env, expect_ok=False)
    assert stopped.returncode != 0
    assert "config.data.probe_files" in stopped.stderr
    assert "--config.evals.probe.every=0" in stopped.stderr
    assert not (workdir / "checkpoints").exists()

    _run(*command, "--config.evals.probe.every=0", env=env)
    saved = json.loads((workdir / "config.json").read_text())
    # The preset's lab was not used: the run read the user's records and captions.
    assert saved["data"]["train_files"] == f"{tmp_path}/records/train-*.tfrecord"
    assert saved["data"]["eval_text_key"] == ""
    assert not (tmp_path / "lab_cache").exists()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if r["split"] == "eval"]
    assert evaluated and evaluated[-1]["step"] == 4
    assert 0 <= evaluated[-1]["retrieval/t2v/R@1"] <= 100
    assert evaluated[-1]["retrieval/num_queries"] == 2 * len(val_names)

    again = _run("vtlearn.evaluate", f"--workdir={workdir}", "--evals=retrieval", env=env)
    printed = dict(line.split("\t") for line in again.stdout.splitlines() if "\t" in line)
    assert float(printed["retrieval/t2v/R@1"]) == pytest.approx(  # printed to 4 digits
        evaluated[-1]["retrieval/t2v/R@1"], rel=1e-3)
    assert np.isfinite(float(printed["retrieval/t2v/MedR"]))
