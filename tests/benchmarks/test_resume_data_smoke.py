"""benchmarks/resume_data.py at a tiny size: it runs, and its restored and
skipping streams agree on the next batch (the script asserts it). No timing is
checked."""

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_script_runs_and_both_streams_agree(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "resume_data.py"), "--position", "300",
         "--batch", "8", "--repeats", "1", "--out_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vtlearn, restored position: first batch at sample 0" in done.stdout
    assert "peer, skipping to sample 300" in done.stdout
