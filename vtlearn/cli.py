"""Command lines: every vtlearn tool runs under absl.

`absl.app` runs each tool, so all share absl's logging and its own flags
(`--flagfile`, `--verbosity`, `--helpfull`). A tool whose arguments are all
flags defines absl flags (`vtlearn.main` needs them for `--config.a.b=...`);
one with subcommands or positional arguments declares them with absl's
argparse integration (`argument_parser`), which accepts absl's flags too.
Tools define their flags when they run, never on import, so importing any
vtlearn module defines none and no two tools' flags can clash.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from absl import app
from absl.flags import argparse_flags


def argument_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """`argparse.ArgumentParser(**kwargs)` that also takes absl's flags.

    Flags are never abbreviated: a tool's `--run` would otherwise be an
    ambiguous prefix of absl's `--run_with_pdb`.
    """
    return argparse_flags.ArgumentParser(allow_abbrev=False, **kwargs)


def run(parse: Callable[[list[str]], Any], body: Callable[[Any], int | None]) -> None:
    """Runs `body(parse(argv))` under `absl.app` (argv without the program name).

    `body` returns the exit status (None: 0).
    """
    def flags_parser(argv: Sequence[str]) -> Any:
        return parse(list(argv[1:]))

    app.run(body, flags_parser=flags_parser)
