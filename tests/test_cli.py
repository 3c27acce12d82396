"""Every command line runs under absl (`vtlearn.cli`)."""

import importlib
import json
import pathlib
import subprocess
import sys

from absl import flags

ROOT = pathlib.Path(__file__).parents[1]
TOOLS = ("vtlearn.main", "vtlearn.evaluate", "vtlearn.data.convert", "vtlearn.data.lab",
         "vtlearn.data.lab_exports", "vtlearn.data.inspect",
         "vtlearn.evaluation.alignment_view", "vtlearn.evaluation.groundability")


def test_importing_a_tool_defines_no_flag():
    # Flags defined on import would clash between tools imported in one process
    # (vtlearn.main's --workdir against a launcher's, say).
    for name in TOOLS:
        importlib.import_module(name)
    defined = {module for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
               if module_flags and ("vtlearn" in module or "launch" in module)}
    assert defined == set()


def test_an_argparse_tool_reads_absl_flag_files(tmp_path):
    # vtlearn.data.lab declares its flags with argparse; --flagfile is absl's.
    flagfile = tmp_path / "lab.flags"
    flagfile.write_text(f"--preset=tiny\n--out_dir={tmp_path / 'labs'}\n--seed=3\n")
    done = subprocess.run([sys.executable, "-m", "vtlearn.data.lab", f"--flagfile={flagfile}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "labs").glob("*/lab.json"))
    assert len(written) == 1
    assert json.loads(written[0].read_text())["settings"]["seed"] == 3


def test_a_tools_exit_status_is_its_mains():
    done = subprocess.run([sys.executable, "-m", "vtlearn.data.inspect",
                           str(ROOT / "no-such-dir" / "x-*.tfrecord")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    assert "no record files match" in done.stderr
