"""What the launch scripts share: running (or, with --dry_run, printing) commands."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence

from vtlearn import cli


class Runner:
    """Runs each command, or prints it (`dry_run`) as a shell line on stdout.

    A dry run prints exactly what a real run would execute, one command per
    line, and touches nothing.
    """

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def __call__(self, argv: Sequence[str], check: bool = True) -> int:
        line = shlex.join(argv)
        if self.dry_run:
            print(line)
            return 0
        print(f"+ {line}", file=sys.stderr, flush=True)
        return subprocess.run(list(argv), check=check).returncode


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser (`vtlearn.cli`): its docstring's first line, the rest as
    the epilog, and the --dry_run flag."""
    out = cli.argument_parser(description=doc.split("\n")[0], epilog=doc.split("\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("--dry_run", action="store_true", help="print the commands only")
    return out


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the script's arguments, those after `--`, which go to vtlearn.main)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    return argv[:argv.index("--")], argv[argv.index("--") + 1:]


def training_command(config: str, workdir: str, overrides: Sequence[str],
                     python: str = "python") -> list[str]:
    """`python -m vtlearn.main` on every process of a multi-process job: JAX
    finds its peers itself (`--distributed`: TPU metadata, SLURM variables)."""
    return [python, "-m", "vtlearn.main", f"--config={config}", f"--workdir={workdir}",
            "--distributed", *overrides]
