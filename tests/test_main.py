"""The entry point's process settings."""

import platform

import pytest

from vtlearn import main


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_accepts_the_freed_memory_settings():
    # mallopt returns 0 for a value it rejects (out of range, or overflowing its int).
    assert main.keep_freed_memory()
