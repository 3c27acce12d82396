"""Comparing runs from their metrics.jsonl: table values, curves, command line."""

import json
import math

import numpy as np
import pytest

from vtlearn import compare

R10 = "retrieval/t2v/R@10"


def _run(tmp_path, name, rows):
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(workdir)


def _seed(tmp_path, name, r10_by_step, probe=None):
    rows = [{"step": s, "split": "train", "loss": 5.0 - s / 100} for s in (50, 100, 150)]
    rows += [{"step": s, "split": "eval", R10: v} for s, v in r10_by_step.items()]
    if probe is not None:  # another evaluator's row at the last step
        rows.append({"step": max(r10_by_step), "split": "eval", "probe/top1": probe})
    return _run(tmp_path, name, rows)


def test_the_table_holds_each_methods_mean_and_sd_of_the_last_evaluation(tmp_path):
    a = [_seed(tmp_path, f"a{i}", {75: 1.0, 150: v}, probe=p)
         for i, (v, p) in enumerate([(20.0, 7.0), (24.0, 9.0), (31.0, 8.0)])]
    b = [_seed(tmp_path, "b0", {150: 12.5})]
    summary = compare.summarize({"A": a, "B": b}, [R10, "probe/top1"])
    assert summary["A"][R10]["mean"] == pytest.approx(25.0)
    assert summary["A"][R10]["sd"] == pytest.approx(np.std([20, 24, 31], ddof=1))
    assert summary["A"]["probe/top1"]["mean"] == pytest.approx(8.0)
    assert summary["A"][R10]["step"] == 150 and summary["A"][R10]["n"] == 3
    assert math.isnan(summary["B"][R10]["sd"]) and "probe/top1" not in summary["B"]
    table = compare.markdown_table(summary, [R10, "probe/top1"]).splitlines()
    assert table[2] == "| A | 3 | 150 | 25.0 ± 5.6 | 8.0 ± 1.0 |"
    assert table[3] == "| B | 1 | 150 | 12.5 | — |"


def test_a_replayed_row_counts_once_and_bad_lines_are_named(tmp_path):
    workdir = _run(tmp_path, "r", [{"step": 150, "split": "eval", R10: 10.0},
                                   {"step": 150, "split": "eval", R10: 11.0}])
    assert compare.last_value(compare.read_metrics(workdir), "eval", R10) == (150, 11.0)
    bad = _run(tmp_path, "bad", [{"step": 1, "split": "eval", R10: 1.0}])
    with open(f"{bad}/metrics.jsonl", "a") as f:
        f.write('{"split": "eval"}\n')
    with pytest.raises(ValueError, match=r"bad/metrics.jsonl, line 2"):
        compare.read_metrics(bad)
    with pytest.raises(FileNotFoundError, match="no metrics"):
        compare.read_metrics(str(tmp_path))


def test_command_line_writes_the_table_and_the_curves(tmp_path, capsys):
    a = ",".join(_seed(tmp_path, f"a{i}", {75: 5.0 + i, 150: 20.0 + 4 * i}) for i in range(2))
    b = _seed(tmp_path, "b0", {75: 3.0, 150: 9.0})
    out = tmp_path / "report"
    assert compare.main(["report", "--run", f"MIL-NCE={a}", "--run", f"NCE={b}",
                         "--metric", R10, "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| MIL-NCE | 2 | 150 | 22.0 ± 2.8 |" in table and "| NCE | 1 | 150 | 9.0 |" in table
    assert table in capsys.readouterr().out
    from PIL import Image

    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG" and image.width > 300
    assert compare.main(["report", "--run", f"X={tmp_path}/a0", "--split", "train",
                         "--metric", "loss", "--out", str(out / "train")]) == 0
    assert "| X | 1 | 150 | 3.5 |" in (out / "train" / "table.md").read_text()
    with pytest.raises(SystemExit, match="vtlearn.compare: .*no metrics"):
        compare.main(["report", "--run", f"X={tmp_path}", "--metric", R10,
                      "--out", str(out)])


def test_a_comparison_plan_can_run_some_methods_with_a_key_changed(tmp_path):
    runs = compare.plan(str(tmp_path), "tiny", seeds=(0, 1), lab_seed=0, benchmarks=(),
                        methods=("hessel",), overrides=("train.batch_size=16",
                                                        "loss.margin=0.2"))
    assert [(r.method, r.seed) for r in runs] == [("hessel", 0), ("hessel", 1)]
    assert all(r.config.train.batch_size == 16 and r.config.loss.margin == 0.2 for r in runs)
    assert runs[0].workdir == str(tmp_path / "runs" / "hessel" / "seed_0")
    with pytest.raises(KeyError, match="train.batch"):
        compare.plan(str(tmp_path), "tiny", seeds=(0,), lab_seed=0, benchmarks=(),
                     overrides=("train.batch=16",))


def test_override_reads_literals_and_keeps_words():
    from vtlearn.config_defaults import configs_dir, load_config, override

    config = load_config(f"{configs_dir()}/mcn.py:tiny")
    override(config, "train.batch_size", "32")
    override(config, "loss.cluster", "none")
    override(config, "data.lab", "tiny")
    override(config, "model.audio.widths", "(4, 4, 8, 8)")
    assert config.train.batch_size == 32 and config.loss.cluster == "none"
    assert tuple(config.model.audio.widths) == (4, 4, 8, 8)
    with pytest.raises(KeyError, match="loss.nope"):
        override(config, "loss.nope", "1")


@pytest.mark.parametrize("args, message", [
    (["--set", "train.batch_size"], "expected KEY=VALUE"),
    (["--set", "train.nope=1"], "train.nope"),
    (["--benchmarks", "youcook2,nope"], "unknown benchmark"),
    (["--seeds", "0,a"], None),  # argparse's own error (exit status 2)
])
def test_comparison_input_errors_name_the_bad_value_before_training(tmp_path, args, message):
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as stop:
        compare.main(["train", "--preset", "tiny", "--out", str(out), "--seeds", "0", *args])
    if message is None:
        assert stop.value.code == 2
    else:
        assert message in str(stop.value.code)
    assert not (out / "runs").exists()  # nothing trained


def test_a_remote_comparison_directory_is_refused():
    with pytest.raises(SystemExit, match="must be a local directory"):
        compare.main(["train", "--preset", "tiny", "--out", "gs://bucket/cmp"])
