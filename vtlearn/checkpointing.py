"""Orbax checkpoints: periodic, on preemption/SIGTERM, keep-N, resume.

A checkpoint holds the whole `TrainState` (step, params, optimizer state,
model state such as BatchNorm statistics or cluster centroids, RNG, the
non-finite counter) and, as JSON, each process's data-stream position, so a
resumed run continues as the uninterrupted one would.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class NoCheckpointError(FileNotFoundError):
    """The run directory holds no checkpoint to restore."""


class RestoreError(ValueError):
    """A checkpoint exists but does not fit the state it is restored into."""


class Checkpointer:
    """Saves and restores train state + data positions under `workdir/checkpoints`.

    Args:
      workdir: run directory.
      keep: number of checkpoints kept (oldest deleted first).
      every_steps: periodic save interval.
      read_only: only restore (`vtlearn.load`): no directory is created, no
        SIGTERM handler installed, and a missing checkpoint raises
        `NoCheckpointError`.
    """

    def __init__(self, workdir: str | Path, keep: int = 1, every_steps: int = 1,
                 read_only: bool = False):
        self.every_steps = every_steps
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        if read_only and not self.directory.is_dir():
            raise NoCheckpointError(f"No checkpoint in {self.directory}: train first, e.g. "
                                    f"python -m vtlearn.main --config=... --workdir={workdir}")
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=not read_only))
        if read_only and self.latest_step is None:
            raise NoCheckpointError(f"No checkpoint in {self.directory}: train first.")
        self._sigterm = threading.Event()
        self._previous = None
        if not read_only and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint at the next step.")
        self._sigterm.set()

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def preempted(self, step: int) -> bool:
        """True when the run must save and stop (SIGTERM or TPU preemption notice)."""
        if self._manager.reached_preemption(step):
            return True
        return jax.process_count() == 1 and self._sigterm.is_set()

    def should_save(self, step: int) -> bool:
        return step % self.every_steps == 0

    def save(self, step: int, state: Any, data_positions: list[int]) -> None:
        """Saves asynchronously; a later save or `close` waits for it."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave({"positions": [int(p) for p in data_positions]})),
            force=True)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, list[int]]:
        """Restores `step` (default: latest) into the structure/shardings given.

        Args:
          abstract_state: pytree of `jax.ShapeDtypeStruct` with shardings.
          step: which checkpoint.

        Returns:
          (state, per-process data positions).
        """
        step = self.latest_step if step is None else step
        if step not in self._manager.all_steps():
            raise NoCheckpointError(f"No checkpoint of step {step} in {self.directory} "
                                    f"(it has {sorted(self._manager.all_steps())}).")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise RestoreError(
                f"The checkpoint of step {step} in {self.directory} does not fit the state "
                f"this config builds ({first}). Was the run trained with another method, "
                f"model or optimizer? Its settings are in {self.workdir / 'config.json'}."
            ) from None
        return restored.state, list(restored.data["positions"])

    def restore_latest_good(self, abstract_state: Any) -> tuple[Any, list[int]]:
        """Restores the newest checkpoint that restores, setting damaged ones aside.

        A checkpoint that fails to restore while an older one restores (e.g.
        files cut short by a crash or a full disk) is moved to
        `checkpoints/damaged_<step>` (kept for inspection, out of the
        manager's way) and the run goes on from the older one.

        Raises:
          RestoreError: when no checkpoint restores; the newest one's error.
        """
        failures = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                restored = self.restore(abstract_state, step)
            except Exception as e:  # noqa: BLE001 - any damage; reported below
                failures.append((step, e))
                continue
            for bad, error in failures:
                target = self.directory / f"damaged_{bad}"
                if jax.process_index() == 0:
                    (self.directory / str(bad)).rename(target)
                logging.warning("Checkpoint %d does not restore (%s); moved it to %s and "
                                "resumed from step %d.", bad, str(error).splitlines()[0][:200],
                                target, step)
            if failures:
                from vtlearn import sharding

                sharding.barrier("vtlearn/checkpoints/set_aside_damaged")
                self._manager.reload()
            return restored
        if not failures:
            raise NoCheckpointError(f"No checkpoint in {self.directory}.")
        error = failures[0][1]
        raise (error if isinstance(error, RestoreError) else RestoreError(
            f"No checkpoint in {self.directory} restores; the newest ({failures[0][0]}): "
            f"{str(error).splitlines()[0][:300]}")) from None

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
