"""Entry point: `python -m vtlearn.main --config=configs/milnce_s3d.py[:preset] --workdir=DIR`.

Overrides: `--config.train.num_steps=100` (unknown keys fail). Compiled
programs are cached in $VTLEARN_COMPILATION_CACHE (default
~/.cache/vtlearn/jax), so a resumed run does not compile again. Multi-host:
on Cloud TPU, `jax.distributed.initialize()` finds its peers itself
(`--distributed`); elsewhere pass `--coordinator_address`, `--num_processes`
and `--process_id`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags


def define_flags() -> None:
    """The command line's flags (defined when it runs, see `vtlearn.cli`)."""
    config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]).",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics).")
    flags.DEFINE_bool("distributed", False,
                      "Call jax.distributed.initialize() (auto on TPU pods).")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Processes in the job.")
    flags.DEFINE_integer("process_id", None, "This process's index.")
    flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keep_freed_memory()
    import jax

    from vtlearn import checkpointing, run_config, sharding, train
    from vtlearn.data.sources import NoDataError

    _quiet_orbax_info_logs()
    sharding.use_compilation_cache()
    args = flags.FLAGS
    distributed = bool(args.coordinator_address or args.distributed)
    if distributed:
        jax.distributed.initialize(args.coordinator_address, args.num_processes,
                                   args.process_id)
    from vtlearn.data.pipeline import keep_tensorflow_on_host

    keep_tensorflow_on_host()
    config = args.config
    workdir = args.workdir or os.path.join("workdir", config.name)
    logging.info("vtlearn %s: %d process(es), %d device(s) (%s); workdir %s",
                 config.name, jax.process_count(), jax.device_count(),
                 jax.devices()[0].platform, workdir)
    try:
        train.train_and_evaluate(config, workdir)
    except (NoDataError, run_config.ConfigChangedError, checkpointing.RestoreError) as e:
        sys.exit(str(e))
    if distributed:
        # Leave through the shutdown barrier: a process that exits while its
        # peers still talk to the coordination service makes them abort.
        jax.distributed.shutdown()


def keep_freed_memory() -> bool:
    """Stops glibc from returning freed blocks to the OS after every step.

    XLA:CPU allocates a step's temporaries afresh; glibc unmaps (or trims)
    large freed blocks, so every step page-faults them back in. Keeping them
    costs a little resident memory (+12% in a lab run); on 2 CPU cores the
    VT-TWINS loss of benchmarks/s2dtw_loss.py takes 56 instead of 112 ms of
    CPU time. Returns whether glibc accepted the settings (False elsewhere,
    where this does nothing).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # <malloc.h> M_* constants
    return all([
        mallopt(mmap_threshold, 1 << 30) == 1,  # blocks up to 1 GiB come from the heap,
        mallopt(trim_threshold, (1 << 31) - 1) == 1,  # which is not trimmed back,
        mallopt(top_pad, 128 << 20) == 1,  # and grows in 128 MiB strides.
    ])


def _quiet_orbax_info_logs():
    """Orbax logs every save phase at INFO; keep its warnings, drop the rest."""
    import logging as pylogging

    class _Filter(pylogging.Filter):
        def filter(self, record):
            return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname

    logging.get_absl_handler().addFilter(_Filter())


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that an unknown `--config.KEY` names the key
    and the keys its section has (config_flags raises a bare `KeyError`)."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError):
        unknown = unknown_config_keys(argv)
        if not unknown:
            raise
        sys.exit("\n".join(unknown))


def unknown_config_keys(argv: list[str]) -> list[str]:
    """One line per `--config.a.b=value` of `argv` whose key the config lacks."""
    from ml_collections import ConfigDict

    from vtlearn.config_defaults import load_config

    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return []
    config, lines = load_config(spec), []
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config."):].split("=", 1)[0].split(".")
        node = config
        for depth, part in enumerate(path):
            if not isinstance(node, ConfigDict) or part not in node:
                section = ".".join(["config", *path[:depth]])
                keys = ", ".join(sorted(node)) if isinstance(node, ConfigDict) else "none"
                lines.append(f"unknown config key --config.{'.'.join(path)}: {section} has "
                             f"no key {part!r} (its keys: {keys})")
                break
            node = node[part]
    return lines


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
