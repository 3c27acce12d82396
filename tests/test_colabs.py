"""The four-method comparison (`vtlearn.compare train`), killed and resumed, and every
notebook of colabs/ executed top to bottom on a fresh kernel over its runs."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vtlearn import compare, explore

pytestmark = pytest.mark.slow

COLABS = Path(__file__).resolve().parent.parent / "colabs"
NOTEBOOKS = sorted(p.stem for p in COLABS.glob("*.py"))
METHODS = ("hessel", "mcn", "milnce", "vttwins")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """A tiny comparison whose process is killed after its first run, then rerun.

    Returns (its --out, the first run's metrics.jsonl as the killed process
    left it, the killed process's exit status).
    """
    out = tmp_path_factory.mktemp("comparison") / "cmp"
    command = [sys.executable, "-m", "vtlearn.compare", "train", "--preset", "tiny",
               "--out", str(out), "--seeds", "0"]
    first = out / "runs" / "milnce" / "seed_0"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    while not (first / compare.COMPLETE_FILE).exists():
        # The process cannot end before its first run completes unless it failed.
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    killed_status = process.wait(timeout=300)
    process.stderr.close()
    first_metrics = (first / "metrics.jsonl").read_text()
    assert compare.main(command[3:]) == 0  # the same command, rerun
    return out, first_metrics, killed_status


def test_a_killed_comparison_continues_and_reports_all_four_methods(comparison):
    out, first_metrics, killed_status = comparison
    assert killed_status != 0  # stopped: killed, or its run stopped early and it said so
    # The finished run was not trained again; every run finished.
    assert (out / "runs" / "milnce" / "seed_0" / "metrics.jsonl").read_text() == first_metrics
    assert all((out / "runs" / m / "seed_0" / compare.COMPLETE_FILE).exists() for m in METHODS)
    assert sorted(compare.discover(str(out))) == list(METHODS)
    table = (out / "table.md").read_text()
    for group in ("retrieval", "clustering", "groundability", *compare.DEFAULT_BENCHMARKS):
        assert f"### {group}" in table
    for method in METHODS:  # a row per method in every table
        assert table.count(f"| {method} | 1 | ") == table.count("### ")
    assert (out / "curves.png").stat().st_size > 0
    # Every run was evaluated by the same evaluators, with its own method.
    configs = {m: json.loads((out / "runs" / m / "seed_0" / "config.json").read_text())
               for m in METHODS}
    assert {m: c["method"] for m, c in configs.items()} == {m: m for m in METHODS}
    evals = [sorted((k, v["type"]) for k, v in c["evals"].items()) for c in configs.values()]
    assert all(e == evals[0] for e in evals)
    assert len({json.dumps(c["lab"], sort_keys=True) for c in configs.values()}) == 1


def test_a_comparison_on_another_lab_is_refused(comparison):
    out, _, _ = comparison
    with pytest.raises(SystemExit, match="other settings"):
        compare.main(["train", "--preset", "tiny", "--out", str(out), "--lab_seed", "1"])


def test_each_notebook_is_its_paired_script_without_outputs():
    import jupytext
    import nbformat

    assert len(NOTEBOOKS) == 5
    for name in NOTEBOOKS:
        script = jupytext.read(COLABS / f"{name}.py")
        notebook = nbformat.read(COLABS / f"{name}.ipynb", as_version=4)
        assert ([(c.cell_type, c.source) for c in script.cells]
                == [(c.cell_type, c.source) for c in notebook.cells]), \
            f"{name}.ipynb and {name}.py differ: run jupytext --sync colabs/{name}.py"
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{name}.ipynb has outputs"
        assert any("parameters" in c.metadata.get("tags", ()) for c in code)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, comparison, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    out, _, _ = comparison
    workdirs = {"retrieval_quickstart": "milnce", "vttwins_alignment": "vttwins",
                "mcn_clusters": "mcn"}
    monkeypatch.setenv("VTLEARN_PRESET", "tiny")
    monkeypatch.setenv("VTLEARN_OUT", str(tmp_path))
    monkeypatch.setenv("VTLEARN_COMPARE_DIR", str(out))
    # The groundability notebook trains its own small run, the others read the comparison's.
    monkeypatch.setenv("VTLEARN_WORKDIR", str(out / "runs" / workdirs[name] / "seed_0")
                       if name in workdirs else "")
    notebook = nbformat.read(COLABS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew nothing"


def test_alignment_cosines_match_a_loop_over_triplets():
    rng = np.random.default_rng(0)
    moment = rng.normal(size=(6, 5))  # what a triplet's three modalities share
    video, audio, text = (moment + 0.5 * rng.normal(size=(6, 5)) for _ in range(3))

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    aligned = np.mean([cos(x[i], (video[i] + audio[i] + text[i]) / 3)
                       for i in range(6) for x in (video, audio, text)])
    got = explore.alignment_cosines([video, audio, text])
    assert got["aligned"] == pytest.approx(aligned)
    # Triplets that are all the same: replacing a modality changes nothing.
    same = [np.tile(m[:1], (6, 1)) for m in (video, audio, text)]
    tied = explore.alignment_cosines(same)
    assert tied["misaligned"] == pytest.approx(tied["aligned"])
    assert got["misaligned"] < got["aligned"]
