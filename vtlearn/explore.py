"""What the notebooks in colabs/ do with a run, kept here so the notebooks stay short.

Every function takes a loaded run (`vtlearn.load`) or its config; those that
show lab videos read the lab's ground truth and re-render its frames from the
run's `config.lab` (also for runs that trained on the lab's features only).

  model = vtlearn.load(workdir)
  units = explore.embed_units(model, "caption")     # the test split's captions, embedded
  explore.retrieval_figure(model, ["red circle moves left"], units)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vtlearn import fs


def config_spec(spec: str) -> str:
    """"mcn.py:local" -> the repository's configs/mcn.py:local (paths are kept)."""
    from vtlearn import config_defaults

    path, sep, preset = spec.partition(":")
    if "/" not in path:
        path = fs.join(config_defaults.configs_dir(), path)
    return path + sep + preset


def train_small(spec: str, workdir: str, overrides: Mapping[str, Any] | None = None) -> str:
    """Trains (or resumes, or just finds finished) `spec` in `workdir`; returns it.

    Args:
      spec: a config file and preset, e.g. "hessel.py:local" (`config_spec`).
      workdir: the run directory.
      overrides: dotted config keys and values, as `--config.KEY=VALUE` would set
        them, e.g. {"model.video.name": "features"}.
    """
    from vtlearn import config_defaults, train

    config = config_defaults.load_config(config_spec(spec))
    for key, value in (overrides or {}).items():
        config_defaults.override(config, key, value)
    train.train_and_evaluate(config, workdir)
    return workdir


def feature_tower(spec: str) -> dict[str, Any]:
    """Overrides that train a pixel config's method on its lab's features instead
    (`config_defaults.use_lab_features`, as `train_small` overrides)."""
    from vtlearn import config_defaults

    config = config_defaults.load_config(config_spec(spec))
    config_defaults.use_lab_features(config)
    return {"model.video.name": config.model.video.name, "data.video": config.data.video,
            "data.features_2d": config.data.features_2d,
            "data.features_3d": config.data.features_3d}


def embed_units(model, kind: str = "segment", files: str | None = None) -> dict[str, np.ndarray]:
    """The evaluation units of `files` (default: the run's eval files) embedded.

    Args:
      kind: "segment" (ground-truth step segments, as annotated) or "caption"
        (every narration with its window, and its text embedded).

    Returns:
      `vtlearn.evaluation.base.embed_units`' arrays: the method's outputs
      ("embedding" [U, D], ...), "text" [U, D] (captions), metadata [U]
      ("label": a segment's step, "category", "start", "end", "video_id")
      and, added here, "caption" [U] (the decoded words of each caption unit).
    """
    from vtlearn.data.pipeline import Units
    from vtlearn.evaluation import base

    units = base.embed_units(model.method, model, model.mesh, model.config.data,
                             files or model.config.data.eval_files,
                             Units(kind, min_seconds=0.0), model.config.eval_batch_size,
                             with_text=kind == "caption")
    units["caption"] = np.array([model.vocab.decode(ids) for ids in units["text_ids"]])
    return units


def lab_settings(config):
    """The run's lab (`LabConfig`) with frames on, to show its videos."""
    from vtlearn.data import lab

    if not config.data.lab:
        raise ValueError("this run did not train on the lab (config.data.lab is empty)")
    settings = lab.lab_config(config.data.lab, **config.lab.to_dict())
    return dataclasses.replace(settings, frames=True)


@functools.lru_cache(maxsize=64)
def _lab_video(settings, video_id: str):
    from vtlearn.data import lab

    _, split, index = video_id.split("-")
    return lab.make_video(settings, split, int(index))


def step_names(config) -> list[str]:
    """The lab's step names, by step label."""
    from vtlearn.data import lab

    return [s.name for s in lab.build_world(lab_settings(config)).steps]


def frames(config, video_id: str, start: float, end: float, count: int = 4) -> np.ndarray:
    """uint8 [count, H, W, 3]: frames of a lab video evenly spaced over [start, end)."""
    video = _lab_video(lab_settings(config), str(video_id))
    times = start + (np.arange(count) + 0.5) * (end - start) / count
    index = np.clip((times * video.frame_rate).astype(int), 0, len(video.frames) - 1)
    return video.frames[index]


def scores(model, queries: Sequence[str], units: Mapping[str, np.ndarray]) -> np.ndarray:
    """[Q, U] the method's own similarity of typed queries to embedded units."""
    outputs = {k: v for k, v in units.items() if k in ("embedding", "audio", "video")}
    return np.asarray(model.similarity(model.embed_text(list(queries)), outputs))


def clips(config, units: Mapping[str, np.ndarray], num_frames: int) -> np.ndarray:
    """uint8 [U, num_frames, H, W, 3]: each unit's window of its lab video as pixels
    (for a pixel model, e.g. the public MIL-NCE weights)."""
    return np.stack([frames(config, v, a, b, num_frames)
                     for v, a, b in zip(units["video_id"], units["start"], units["end"])])


def retrieval_figure(model, queries: Sequence[str], units: Mapping[str, np.ndarray],
                     top: int = 3, count: int = 4, lab_config=None):
    """Per query, its `top` units as frame strips titled with caption and score.

    `lab_config`: the run config whose lab the units come from (default:
    `model.config`; give it for a model that did not train on the lab).
    """
    from vtlearn.evaluation.figures import pyplot

    plt = pyplot()
    s = scores(model, queries, units)
    fig, axes = plt.subplots(len(queries), top, figsize=(3.2 * top, 1.6 * len(queries)),
                             squeeze=False)
    for q, query in enumerate(queries):
        for rank, u in enumerate(np.argsort(-s[q])[:top]):
            strip = frames(lab_config or model.config, units["video_id"][u], units["start"][u],
                           units["end"][u], count)
            ax = axes[q, rank]
            ax.imshow(np.concatenate(list(strip), axis=1))
            ax.set_title(f"{units['caption'][u][:40]}\n{s[q, u]:.3f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if rank == 0:
                ax.set_ylabel(query[:30], fontsize=8)
    fig.tight_layout()
    return fig


def embedding_map(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, 2] t-SNE of L2-normalised points [N, D] (cosine geometry)."""
    from sklearn.manifold import TSNE

    x = np.asarray(points, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                random_state=seed).fit_transform(x)


def cluster_figure(xy: np.ndarray, steps: np.ndarray, clusters: np.ndarray, title: str = ""):
    """The 2-D map twice: coloured by ground-truth step and by cluster."""
    from vtlearn.evaluation.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, colours, name in ((axes[0], steps, "ground-truth step"),
                              (axes[1], clusters, "k-means cluster")):
        _, ids = np.unique(colours, return_inverse=True)
        ax.scatter(xy[:, 0], xy[:, 1], c=ids, cmap="tab20", s=8)
        ax.set_title(f"{title} by {name}".strip(), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def alignment_cosines(modalities: Sequence[np.ndarray], seed: int = 0) -> dict[str, float]:
    """Appendix C.1 of MCN (Table B): cosine of each instance to its tuple's mean.

    For tuples (x_1, ..., x_M) of M modalities' embeddings [N, D] each, the
    mean embedding m = mean_k x_k (eq. 4); "aligned" is the average over
    tuples and modalities of cos(x_k, m). "misaligned" replaces, for each
    modality k in turn, x_k of every tuple by x_k of another tuple (drawn at
    random) and averages cos(replaced x_k, the tuple's new mean).
    """
    rng = np.random.default_rng(seed)
    x = np.stack([np.asarray(m, np.float64) for m in modalities])  # [M, N, D]
    n = x.shape[1]

    def cos(a, b):
        return np.sum(a * b, -1) / np.maximum(
            np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)

    aligned = cos(x, x.mean(0, keepdims=True)).mean()
    misaligned = []
    for k in range(len(x)):
        other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never the tuple itself
        swapped = x.copy()
        swapped[k] = x[k, other]
        misaligned.append(cos(swapped[k], swapped.mean(0)).mean())
    return {"aligned": float(aligned), "misaligned": float(np.mean(misaligned))}


def untrained(model, seed: int = 0):
    """The same run's model at initialisation (for before/after comparisons)."""
    from vtlearn.train import Trainer

    config = model.config.copy_and_resolve_references()
    config.seed = seed
    state = Trainer(config, model.mesh).init_state()
    return dataclasses.replace(model, params=state.params, model_state=state.model_state,
                               step=0)
