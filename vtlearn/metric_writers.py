"""Metrics to TensorBoard event files and a JSONL file, plus progress lines.

`workdir/metrics.jsonl` has one JSON object per write:
`{"step": int, "split": "train" | "eval" | ..., "<name>": float, ...}`;
notebooks read it with `pandas.read_json(path, lines=True)`.
TensorBoard events go to `workdir/tensorboard/<split>/`. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
import time

import jax
from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from vtlearn import fs


class MetricWriter:
    """Writes scalar metrics of each split to JSONL and TensorBoard.

    Args:
      workdir: run directory.
      resumed_step: when a run resumes from this step, rows of later steps in
        `metrics.jsonl` were written by the lost part of the previous attempt
        (e.g. after kill -9) and are dropped, so replayed steps are not listed
        twice.
    """

    def __init__(self, workdir: str | os.PathLike, resumed_step: int | None = None):
        self.workdir = os.fspath(workdir)
        self.active = jax.process_index() == 0
        self._tb: dict[str, EventFileWriter] = {}
        if self.active:
            fs.makedirs(self.workdir)
            path = fs.join(self.workdir, "metrics.jsonl")
            if resumed_step is not None and fs.exists(path):
                lines = fs.read_text(path).splitlines(keepends=True)
                kept = [x for x in lines if x.strip() and json.loads(x)["step"] <= resumed_step]
                if len(kept) != len(lines):
                    logging.info("Dropped %d metrics.jsonl rows after step %d (replayed).",
                                 len(lines) - len(kept), resumed_step)
                    fs.write_text(path, "".join(kept))
            self._jsonl = fs.open(path, "a")

    def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
        if not self.active:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), "split": split, **scalars}) + "\n")
        self._jsonl.flush()
        if split not in self._tb:
            self._tb[split] = EventFileWriter(fs.join(self.workdir, "tensorboard", split))
        values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
        self._tb[split].add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))
        self._tb[split].flush()

    def close(self) -> None:
        if self.active:
            self._jsonl.close()
            for w in self._tb.values():
                w.close()


class Progress:
    """Steps/s, clips/s and the training ETA between successive `update` calls.

    The trainer calls `restart` after work that is not training (compiling
    the first step, an evaluation), so the rate, and the ETA drawn from it,
    measure training steps only; evaluations still to come are not in the ETA.
    """

    def __init__(self, total_steps: int, clips_per_step: int, start_step: int,
                 now: float | None = None):
        self.total, self.clips = total_steps, clips_per_step
        self.restart(start_step, now)

    def restart(self, step: int, now: float | None = None) -> None:
        """Measures the next rate from `step` at time `now` (default: the clock's now)."""
        self._step, self._time = step, time.perf_counter() if now is None else now

    def update(self, step: int, now: float | None = None) -> dict[str, float]:
        """Logs and returns the rates from the last call or `restart` to `step` at
        time `now` (default: the clock's now); {} if no step ran."""
        if step == self._step:
            return {}
        now = time.perf_counter() if now is None else now
        rate = (step - self._step) / max(now - self._time, 1e-9)
        self.restart(step, now)
        eta = (self.total - step) / max(rate, 1e-9)
        logging.info("step %d/%d  %.2f steps/s  %.1f clips/s  ETA %s", step, self.total,
                     rate, rate * self.clips, format_duration(eta))
        return {"steps_per_second": rate, "clips_per_second": rate * self.clips}


def format_duration(seconds: float) -> str:
    """"H:MM:SS", with "Nd " in front from one day on (e.g. "3d 4:05:06")."""
    whole = int(round(seconds))
    days, rest = divmod(whole, 86_400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text
