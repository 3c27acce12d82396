"""Method-agnostic evaluation during or after training.

* Zero-shot retrieval (MIL-NCE §4.2 protocol): every caption of the eval
  records is a query; its segment is embedded as `data.eval_num_clips` clips
  whose joint-space embeddings are averaged. Captions with identical text
  (common in the lab's clean step names) are grouped, see
  `retrieval.grouped_retrieval_metrics`.
* Linear probe (the HMDB/UCF analogue): backbone features of ground-truth
  segments, averaged over clips, classified by their segment label; trained
  on `data.probe_files`, tested on `data.eval_files`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from vtlearn import sharding
from vtlearn.data import pipeline
from vtlearn.evaluation import linear_probe, retrieval

CLIP_KEYS = ("video", "audio", "features_2d", "features_3d")


@functools.lru_cache(maxsize=8)
def _jitted(method):
    video = sharding.jit(method.embed_video)
    text = sharding.jit(method.embed_text)
    return video, text


def embed_units(method, state, data_cfg: ml_collections.ConfigDict, files: str,
                mesh, batch_size: int, with_text: bool = True) -> dict[str, np.ndarray]:
    """Embeds every evaluation unit of `files` (see `pipeline.build_eval_dataset`).

    Args:
      method: a `Method`.
      state: train state (params, model_state).
      data_cfg: data config (eval_unit, eval_num_clips, ...).
      files: record pattern.
      mesh: device mesh.
      batch_size: global units per step (divisible by the device count).
      with_text: also embed the units' captions.

    Returns:
      NumPy arrays over the valid units U: "video" [U, D] (clip mean),
      "features" [U, F] (clip mean, if the method returns features),
      "text" [U, D], "text_ids" [U, L], "label" [U], "step" [U].
    """
    video_fn, text_fn = _jitted(method)
    local_batch = batch_size // jax.process_count()
    c = data_cfg.eval_num_clips
    batches = pipeline.iterate_eval(data_cfg, local_batch, files=files,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
    template = None
    chunks: dict[str, list[np.ndarray]] = {}
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
                    "while others do; give every process eval files with captions.")
            batch = template
        clips = {k: batch[k].reshape((-1,) + batch[k].shape[2:]) for k in CLIP_KEYS
                 if k in batch}
        out = video_fn(state.params, state.model_state, sharding.global_batch(clips, mesh))
        host = {"video": out["embedding"]}
        if "features" in out:
            host["features"] = out["features"]
        if with_text:
            host["text"] = text_fn(state.params, state.model_state,
                                   sharding.global_batch({"t": batch["text"][:, 0]}, mesh)["t"])
        host = sharding.to_host(host)
        meta = sharding.to_host({k: batch[k] for k in ("valid", "label", "step")}
                                | {"text_ids": batch["text"][:, 0]})
        for key in ("video", "features"):
            if key in host:
                host[key] = np.asarray(host[key]).reshape((-1, c) + host[key].shape[1:]).mean(1)
        valid = np.asarray(meta.pop("valid"), bool)
        for k, v in (host | meta).items():
            chunks.setdefault(k, []).append(np.asarray(v)[valid])
    if not chunks:
        raise ValueError(f"No evaluation unit in {files!r} (data.eval_unit="
                         f"{data_cfg.eval_unit!r}).")
    return {k: np.concatenate(v) for k, v in chunks.items()}


def _any_process(flag: bool) -> bool:
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.bool_(flag))))


def evaluate(method, state: Any, config: ml_collections.ConfigDict, mesh) -> dict[str, float]:
    """Runs the evaluations enabled in `config.eval`; returns flat metrics."""
    ec, data = config.eval, config.data
    metrics: dict[str, float] = {}
    if ec.retrieval:
        cfg = ml_collections.ConfigDict(data.to_dict())
        cfg.eval_unit = "caption"
        units = embed_units(method, state, cfg, data.eval_files, mesh, ec.batch_size)
        _, groups = np.unique(units["text_ids"], axis=0, return_inverse=True)
        similarity = units["text"] @ units["video"].T
        metrics |= {f"retrieval/{k}": v for k, v in retrieval.grouped_retrieval_metrics(
            similarity, groups.reshape(-1)).items()}
        metrics |= {f"retrieval/{k}": v
                    for k, v in retrieval.grouped_chance_recall(groups.reshape(-1), 10).items()}
        metrics["retrieval/num_queries"] = float(len(np.unique(groups)))
    if ec.probe:
        cfg = ml_collections.ConfigDict(data.to_dict())
        cfg.eval_unit = "segment"
        train = embed_units(method, state, cfg, data.probe_files, mesh, ec.batch_size,
                            with_text=False)
        test = embed_units(method, state, cfg, data.eval_files, mesh, ec.batch_size,
                           with_text=False)
        key = "features" if "features" in train else "video"
        result = linear_probe.linear_probe(train[key], train["label"], test[key],
                                           test["label"])
        metrics["probe/top1"] = result["top1"]
        metrics["probe/chance"] = result["chance"]
    return metrics
