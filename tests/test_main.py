"""The entry point's process settings."""

import platform

import pytest

from vtlearn import main


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_accepts_the_freed_memory_settings():
    # mallopt returns 0 for a value it rejects (out of range, or overflowing its int).
    assert main.keep_freed_memory()


def test_an_unknown_config_key_is_named_with_its_sections_keys():
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "vtlearn.main", "--config=configs/mcn.py:tiny",
         "--config.train.num_step=9", "--config.loss.margin=0.1"],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "unknown config key --config.train.num_step: config.train has no key 'num_step' "
        "(its keys: batch_size, checkpoint_every, keep_checkpoints, log_every, num_steps)")
    assert main.unknown_config_keys(["x", f"--config={root}/configs/mcn.py:tiny",
                                     "--config.loss.margin=0.1"]) == []
