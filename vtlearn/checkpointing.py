"""Orbax checkpoints: periodic, on preemption/SIGTERM (of any process), keep-N, resume.

A checkpoint holds the whole `TrainState` (step, params, optimizer state,
model state such as BatchNorm statistics or cluster centroids, RNG, the
non-finite counter) and, as JSON, the data stream's description (each
process's position). Beside it, `workdir/data_state/<step>/process_<i>-of-<n>`
holds each process's saved tf.data position (`pipeline.TrainStream.save`),
kept and deleted with its checkpoint, so a resumed run continues as the
uninterrupted one would without reading the records it already used.

The workdir may be local or a URL (`vtlearn.fs`). Orbax writes local and
`gs://` checkpoints itself. On the other filesystems of `tf.io.gfile` (e.g.
`ram://`, `hdfs://`), which its array store cannot reach, checkpoints are
written to a local mirror (`VTLEARN_CHECKPOINT_MIRROR`, default
`~/.cache/vtlearn/checkpoint_mirror/<hash of the URL>`) and copied to the
workdir once complete; a complete copy ends with its `COPIED` marker, and a
checkpoint without one (a copy cut short) is never restored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from vtlearn import fs

# URL schemes whose checkpoints orbax writes itself (its array store reaches them).
NATIVE_SCHEMES = ("", "gs")
COPIED = "COPIED"


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

    def __init__(self, workdir: str | os.PathLike, keep: int = 1, every_steps: int = 1,
                 read_only: bool = False):
        self.every_steps = every_steps
        self._read_only = read_only
        self.workdir = fs.absolute(workdir)
        self.directory = fs.join(self.workdir, "checkpoints")
        if read_only and not fs.isdir(self.directory):
            raise NoCheckpointError(f"No checkpoint in {self.directory}: train first, e.g. "
                                    f"python -m vtlearn.main --config=... --workdir={workdir}")
        self._mirror = None
        if fs.scheme(self.directory) not in NATIVE_SCHEMES:
            self._mirror = _mirror_directory(self.directory)
            self._copy_down()
        self._manager = ocp.CheckpointManager(
            self._mirror or _orbax_path(self.directory), options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=not read_only))
        if read_only and self.latest_step is None:
            raise NoCheckpointError(f"No checkpoint in {self.directory}: train first.")
        self._sigterm = threading.Event()
        self._previous = None
        # One process: SIGTERM sets a flag. Several: JAX's preemption service has
        # its own SIGTERM handler that tells every process, and `preempted` stops
        # them all at one step; a handler installed here would replace it.
        if (not read_only and jax.process_count() == 1
                and threading.current_thread() is threading.main_thread()):
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint at the next step.")
        self._sigterm.set()
        if callable(self._previous):  # an outer handler (`vtlearn.compare`) learns of it too
            self._previous(signum, frame)

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def preempted(self, step: int) -> bool:
        """True when the run must save and stop: SIGTERM (or a TPU maintenance
        notice) reached any process. With several processes every process must
        call this at every step; all get True at the same step (JAX's preemption
        sync point), so all save that step and stop."""
        if self._manager.reached_preemption(step):
            return True
        return self._sigterm.is_set()

    def should_save(self, step: int) -> bool:
        return step % self.every_steps == 0

    def data_state_dir(self, step: int) -> str:
        """Where this process's data position of `step` goes (`TrainStream.save`)."""
        return fs.join(self.workdir, "data_state", str(step),
                       f"process_{jax.process_index()}-of-{jax.process_count()}")

    def save(self, step: int, state: Any, data: dict[str, Any]) -> None:
        """Saves asynchronously (a later save or `close` waits for it); `data` is
        JSON describing the data stream, e.g. {"positions": [per process]}."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)), force=True)
        if self._mirror is not None:
            self._manager.wait_until_finished()
            self._copy_up()
        self._prune_data_states(keep=set(self._manager.all_steps()) | {step})

    def _prune_data_states(self, keep: set[int]) -> None:
        root = fs.join(self.workdir, "data_state")
        if jax.process_index() != 0 or not fs.isdir(root):
            return
        for entry in fs.listdir(root):
            if entry.isdigit() and int(entry) not in keep:
                fs.rmtree(fs.join(root, entry))

    def restore(self, abstract_state: Any,
                step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores `step` (default: latest) into the structure/shardings given.

        Args:
          abstract_state: pytree of `jax.ShapeDtypeStruct` with shardings.
          step: which checkpoint.

        Returns:
          (state, the data JSON given to `save`).
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
                f"model or optimizer? Its settings are in {fs.join(self.workdir, 'config.json')}."
            ) from None
        return restored.state, dict(restored.data)

    def restore_latest_good(self, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
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
                target = fs.join(self.directory, f"damaged_{bad}")
                if jax.process_index() == 0:
                    self._set_aside(bad, target)
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

    def _set_aside(self, step: int, target: str) -> None:
        if self._mirror is None:
            _orbax_path(fs.join(self.directory, str(step))).rename(_orbax_path(target))
            return
        os.rename(os.path.join(self._mirror, str(step)), os.path.join(
            self._mirror, fs.name(target)))
        self._copy_up()

    def _copy_down(self) -> None:
        """Replaces the local mirror with the workdir's complete checkpoints."""
        if os.path.isdir(self._mirror):
            shutil.rmtree(self._mirror)
        os.makedirs(self._mirror)
        if not fs.isdir(self.directory):
            return
        for entry in fs.listdir(self.directory):
            source = fs.join(self.directory, entry)
            if not fs.exists(fs.join(source, COPIED)):
                if entry.isdigit():
                    logging.warning("Checkpoint %s was not copied whole (no %s marker); "
                                    "it is not restored.", source, COPIED)
                continue
            for relative in fs.walk_files(source):
                local = os.path.join(self._mirror, entry, relative)
                os.makedirs(os.path.dirname(local), exist_ok=True)
                fs.copy(fs.join(source, relative), local)

    def _copy_up(self) -> None:
        """Makes the workdir's checkpoints those of the mirror: copies each new
        one (its marker last) and deletes those the mirror no longer has."""
        from vtlearn import sharding

        local = {e for e in os.listdir(self._mirror)
                 if os.path.isdir(os.path.join(self._mirror, e)) and "tmp" not in e}
        remote = set(fs.listdir(self.directory)) if fs.isdir(self.directory) else set()
        for entry in sorted(local):
            target = fs.join(self.directory, entry)
            if entry in remote and fs.exists(fs.join(target, COPIED)):
                continue
            for relative in fs.walk_files(os.path.join(self._mirror, entry)):
                fs.makedirs(fs.join(target, *relative.split("/")[:-1]))
                fs.copy(os.path.join(self._mirror, entry, relative),
                           fs.join(target, relative))
        sharding.barrier("vtlearn/checkpoints/copied")
        if jax.process_index() == 0:
            for entry in sorted(local):
                marker = fs.join(self.directory, entry, COPIED)
                if not fs.exists(marker):
                    fs.write_text(marker, "")
            for entry in sorted(remote - local):
                fs.rmtree(fs.join(self.directory, entry))

    def close(self) -> None:
        self._manager.wait_until_finished()
        if not self._read_only:
            self._prune_data_states(keep=set(self._manager.all_steps()))
        self._manager.close()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _orbax_path(path: str):
    from etils import epath

    return epath.Path(path)


def _mirror_directory(url: str) -> str:
    root = os.environ.get("VTLEARN_CHECKPOINT_MIRROR") or os.path.expanduser(
        "~/.cache/vtlearn/checkpoint_mirror")
    return os.path.join(root, hashlib.sha256(url.encode()).hexdigest()[:16],
                        f"process_{jax.process_index()}")
