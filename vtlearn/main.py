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

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (auto on TPU pods).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax

    from vtlearn import train
    from vtlearn.data.sources import NoDataError

    _quiet_orbax_info_logs()
    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "VTLEARN_COMPILATION_CACHE", os.path.expanduser("~/.cache/vtlearn/jax")))
    distributed = bool(_COORDINATOR.value or _DISTRIBUTED.value)
    if distributed:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                                   _PROCESS_ID.value)
    from vtlearn.data.pipeline import keep_tensorflow_on_host

    keep_tensorflow_on_host()
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("workdir", config.name)
    logging.info("vtlearn %s: %d process(es), %d device(s) (%s); workdir %s",
                 config.name, jax.process_count(), jax.device_count(),
                 jax.devices()[0].platform, workdir)
    try:
        train.train_and_evaluate(config, workdir)
    except NoDataError as e:
        sys.exit(str(e))
    if distributed:
        # Leave through the shutdown barrier: a process that exits while its
        # peers still talk to the coordination service makes them abort.
        jax.distributed.shutdown()


def _quiet_orbax_info_logs():
    """Orbax logs every save phase at INFO; keep its warnings, drop the rest."""
    import logging as pylogging

    class _Filter(pylogging.Filter):
        def filter(self, record):
            return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname

    logging.get_absl_handler().addFilter(_Filter())


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
