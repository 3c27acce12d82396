"""The evaluator interface and the one embedding pass every evaluator shares.

An evaluator is a module of `vtlearn.evaluation` (or a dotted module path of
the user's own) defining `Evaluator`, a subclass of `base.Evaluator`, and
`default_config()`, the keys of its section `config.evals.<name>`
(`type` and `every` come from `section`). The trainer builds every evaluator
before the first step, so a bad setting fails before training, and calls
`run` every `every` steps and at the last step; `python -m vtlearn.evaluate`
calls it on a saved run.
"""

from __future__ import annotations

import abc
import functools
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from absl import logging

from vtlearn import fs, sharding
from vtlearn.data import pipeline
from vtlearn.data.text import Vocabulary

CLIP_KEYS = ("video", "audio", "audio_frames", "features_2d", "features_3d")
# What `embed_units` returns besides the method's outputs.
METADATA_KEYS = ("text", "text_ids", "label", "step", "category", "start", "end", "video_id")
PROGRESS_SECONDS = 30.0  # an embedding pass logs its progress this often
VIDEO_ID_BYTES = 128  # video ids travel between processes as fixed-width bytes


class Variables(Protocol):
    """What evaluators read of a train state (or of a loaded model)."""

    params: Any
    model_state: Any


def section(type_: str, every: int, **overrides) -> ml_collections.ConfigDict:
    """`config.evals.<name>` for evaluator `type_`: its defaults, `every`, overrides.

    Args:
      type_: evaluator module name ("retrieval", "linear_probe", ...).
      every: run every this many training steps and at the last step (0: only
        when asked, e.g. by `python -m vtlearn.evaluate`).
      **overrides: values of the evaluator's own keys.
    """
    from vtlearn.evaluation import get_evaluator_module

    config = get_evaluator_module(type_).default_config()
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"evaluator {type_!r} has no key(s) {sorted(unknown)}; "
                         f"it has {sorted(config)}")
    config.update(overrides)
    return ml_collections.ConfigDict(dict(type=type_, every=every, **config.to_dict()))


class Evaluator(abc.ABC):
    """One evaluation protocol over a method's embeddings.

    Args:
      method: the run's `vtlearn.methods.base.Method`.
      mesh: the device mesh.
      config: the whole (data-resolved) run config.
      name: the evaluator's key in `config.evals`; prefixes its metrics.
      workdir: where artefacts are written (None: nowhere).
    """

    def __init__(self, method, mesh, config: ml_collections.ConfigDict, name: str,
                 workdir: str | os.PathLike | None = None):
        self.method, self.mesh, self.config, self.name = method, mesh, config, name
        self.settings = config.evals[name]
        self.workdir = None if workdir is None else os.fspath(workdir)
        self.batch_size = config.eval_batch_size
        if self.batch_size % jax.device_count():
            raise ValueError(f"config.eval_batch_size={self.batch_size} must be divisible by "
                             f"the {jax.device_count()} devices")

    @abc.abstractmethod
    def run(self, variables: Variables, step: int) -> dict[str, float]:
        """Evaluates `variables`; returns metrics without the name prefix."""

    # Shared machinery -----------------------------------------------------------

    def files(self, key: str, default_key: str) -> str:
        """`settings[key]`, or `config.data[default_key]` when empty; checked to match."""
        pattern = self.settings[key] or self.config.data[default_key]
        if not pattern:
            raise ValueError(
                f"evaluator {self.name!r} reads config.data.{default_key} (or its own "
                f"config.evals.{self.name}.{key}), and both are empty: set one, or leave "
                f"it out (training: --config.evals.{self.name}.every=0; vtlearn.evaluate: "
                "--evals=<the others>)")
        try:
            pipeline.list_files(pattern, jax.process_index(), jax.process_count())
        except ValueError as e:
            raise ValueError(f"config.evals.{self.name}.{key} (default "
                             f"config.data.{default_key}): {e}") from None
        return pattern

    def embed_units(self, variables: Variables, files: str, units: pipeline.Units,
                    with_text: bool = True, average_clips: bool = True) -> dict[str, np.ndarray]:
        """`embed_units` over this run's data settings."""
        return embed_units(self.method, variables, self.mesh, self.config.data, files, units,
                           self.batch_size, with_text=with_text, average_clips=average_clips)

    def embed_texts(self, variables: Variables, texts: Sequence[str]) -> np.ndarray:
        """Joint-space embeddings [N, D] of raw texts (step or class names)."""
        vocab = Vocabulary.load(self.config.data.vocab_path)
        return embed_token_ids(self.method, variables, self.mesh,
                               vocab.encode_batch(texts, self.config.data.max_words),
                               self.batch_size)

    def artefact_path(self, step: int, filename: str) -> str | None:
        """`workdir/artefacts/<name>/step_<step>_<filename>` on process 0, else None
        (any filesystem: write it with `vtlearn.fs`)."""
        if self.workdir is None or jax.process_index() != 0:
            return None
        directory = fs.join(self.workdir, "artefacts", self.name)
        fs.makedirs(directory)
        return fs.join(directory, f"step_{step}_{filename}")


@functools.lru_cache(maxsize=8)
def _jitted(method):
    return sharding.jit(method.embed_video), sharding.jit(method.embed_text)


def embed_units(method, variables: Variables, mesh, data_cfg: ml_collections.ConfigDict,
                files: str, units: pipeline.Units, batch_size: int,
                with_text: bool = True, average_clips: bool = True) -> dict[str, np.ndarray]:
    """Embeds every evaluation unit of `files` in one sharded pass.

    Each unit's C clips are embedded and averaged (every output of
    `method.embed_video`; kept per clip, [U, C, ...], with `average_clips=False`).
    Every process reads its own files; all processes get all units.

    Args:
      method: a `Method`.
      variables: params and model state.
      mesh: device mesh.
      data_cfg: the run's data config (clip and crop settings).
      files: record pattern.
      units: which units (`vtlearn.data.pipeline.Units`).
      batch_size: global units per step (divisible by the device count).
      with_text: also embed the units' texts (caption units).
      average_clips: average each output over a unit's C clips.

    Returns:
      NumPy arrays over the U valid units: the outputs of `method.embed_video`
      ("embedding" [U, D], "features" [U, F], ...), "text" [U, D] (with
      `with_text`), and metadata: "text_ids" [U, L], "label", "step",
      "category" int [U], "start", "end" float [U] (seconds), "video_id" str [U].
    """
    video_fn, text_fn = _jitted(method)
    c = units.num_clips or data_cfg.eval_num_clips
    batches = pipeline.iterate_eval(data_cfg, batch_size // jax.process_count(), units,
                                    files=files, process_index=jax.process_index(),
                                    process_count=jax.process_count())
    template = None
    chunks: dict[str, list[np.ndarray]] = {}
    started = logged = time.perf_counter()
    while True:
        batch = next(batches, None)
        if batch is not None and template is None:
            template = {k: np.zeros_like(v) for k, v in batch.items()}  # valid=False
        if not _any_process(batch is not None):
            break
        if batch is None:  # this process is done, others are not: feed padding
            if template is None:
                raise RuntimeError(
                    f"Process {jax.process_index()} has no evaluation unit in {files!r} "
                    "while others do; give every process files with units.")
            batch = template
        clips = {k: batch[k].reshape((-1,) + batch[k].shape[2:]) for k in CLIP_KEYS
                 if k in batch}
        host = dict(video_fn(variables.params, variables.model_state,
                             sharding.global_batch(clips, mesh)))
        if with_text:
            host["text"] = text_fn(variables.params, variables.model_state, sharding.global_batch(
                {"text": batch["text"][:, 0]}, mesh)["text"])
        host = sharding.to_host(host)
        for key in set(host) - {"text"}:
            host[key] = np.asarray(host[key]).reshape((-1, c) + host[key].shape[1:])
            if average_clips:
                host[key] = host[key].mean(1)
        meta = sharding.to_host({k: batch[k] for k in ("valid", "label", "step", "category",
                                                      "start", "end")}
                                | {"text_ids": batch["text"][:, 0],
                                   "video_id": _id_bytes(batch["video_id"])})
        meta["video_id"] = np.char.decode(np.asarray(meta["video_id"]).view(
            f"S{VIDEO_ID_BYTES}").reshape(-1), "utf-8")
        valid = np.asarray(meta.pop("valid"), bool)
        for k, v in (host | meta).items():
            chunks.setdefault(k, []).append(np.asarray(v)[valid])
        if time.perf_counter() - logged >= PROGRESS_SECONDS:  # long evaluations show progress
            logged = time.perf_counter()
            logging.info("  embedded %d %s units of %s (%.0f s)",
                         sum(map(len, chunks["video_id"])), units.kind, files, logged - started)
    if not chunks:
        raise ValueError(f"No evaluation unit ({units.kind}) in {files!r}.")
    out = {k: np.concatenate(v) for k, v in chunks.items()}
    _check_finite(out, files)
    return out


def _check_finite(units: dict[str, np.ndarray], files: str) -> None:
    """Raises naming the first units whose embeddings are NaN/Inf (NaN/Inf in the
    records already fails as they are read: `records.parse_example`)."""
    floats = [v.reshape(len(v), -1) for k, v in units.items()
              if k not in ("start", "end") and v.dtype.kind == "f"]
    bad = np.flatnonzero(~np.all(np.isfinite(np.concatenate(floats, axis=1)), axis=1))
    if len(bad):
        where = ", ".join(f"video {units['video_id'][i]} at {units['start'][i]:.1f}-"
                          f"{units['end'][i]:.1f} s" for i in bad[:3])
        raise ValueError(f"{len(bad)} evaluation unit(s) of {files!r} embed to NaN/Inf, e.g. "
                         f"{where}: check those records' frames or features")


def _id_bytes(ids: np.ndarray) -> np.ndarray:
    """Video ids (bytes [B]) as uint8 [B, VIDEO_ID_BYTES] (gatherable across processes)."""
    ids = [i if isinstance(i, bytes) else b"" for i in ids]  # padding rows hold 0
    too_long = [i for i in ids if len(i) > VIDEO_ID_BYTES]
    if too_long:
        raise ValueError(f"video id {too_long[0][:40]!r}... is longer than {VIDEO_ID_BYTES} "
                         "bytes")
    return np.asarray(ids, f"S{VIDEO_ID_BYTES}").view(np.uint8).reshape(len(ids), -1)


def embed_in_batches(fn, variables: Variables, mesh, inputs: dict[str, np.ndarray],
                     batch_size: int):
    """`fn(params, model_state, batch)` over N inputs in padded, sharded batches.

    Every process must pass the same inputs; each feeds its share of every
    batch, and all get all outputs.

    Args:
      fn: a jitted method function (`embed_video` or `embed_text` with a key).
      variables: params and model state.
      mesh: device mesh.
      inputs: arrays with a leading axis N.
      batch_size: global batch size (divisible by the device count).

    Returns:
      `fn`'s output pytree as NumPy arrays with leading axis N.
    """
    n = len(next(iter(inputs.values())))
    devices = jax.device_count()
    batch_size = min(batch_size, max(1, -(-n // devices)) * devices)  # no needless padding
    per_process, me = batch_size // jax.process_count(), jax.process_index()
    outputs = []
    for first in range(0, max(n, 1), batch_size):
        batch = {}
        for key, value in inputs.items():
            rows = np.zeros((batch_size,) + value.shape[1:], value.dtype)
            part = value[first:first + batch_size]
            rows[:len(part)] = part
            batch[key] = rows[me * per_process:(me + 1) * per_process]
        out = fn(variables.params, variables.model_state, sharding.global_batch(batch, mesh))
        outputs.append(jax.tree.map(np.asarray, sharding.to_host(out)))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outputs)


def embed_token_ids(method, variables: Variables, mesh, token_ids: np.ndarray,
                    batch_size: int) -> np.ndarray:
    """Text embeddings [N, D] of token ids [N, L] (`embed_in_batches`)."""
    _, text_fn = _jitted(method)
    return embed_in_batches(lambda p, s, b: text_fn(p, s, b["text"]), variables, mesh,
                            {"text": np.asarray(token_ids, np.int32)}, batch_size)


def pool_by_video(units: dict[str, np.ndarray],
                  keys: Sequence[str] = ("embedding", "features")) -> dict[str, np.ndarray]:
    """Averages unit embeddings per video (whole-video classification, e.g. HMDB/UCF).

    Args:
      units: from `embed_units` (e.g. "window" units covering whole videos).
      keys: embedding keys to average; missing ones are skipped.

    Returns:
      Over the V distinct videos, in order of first appearance: the mean of
      each key [V, ...], "category" [V] and "video_id" [V].
    """
    ids, first, inverse = np.unique(units["video_id"], return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse.reshape(-1)]
    counts = np.bincount(group, minlength=len(ids))
    out = {"video_id": ids[order], "category": units["category"][first[order]]}
    for key in keys:
        if key in units:
            total = np.zeros((len(ids),) + units[key].shape[1:], np.float64)
            np.add.at(total, group, units[key])
            out[key] = (total / counts.reshape((-1,) + (1,) * (total.ndim - 1))).astype(
                units[key].dtype)
    return out


def _any_process(flag: bool) -> bool:
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.bool_(flag))))
