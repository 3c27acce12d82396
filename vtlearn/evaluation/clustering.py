"""Clustering metrics of embeddings against ground-truth steps (MCN appendix B.2, after
SeLaVi, Asano et al. 2020).

For ground-truth labels y and cluster ids ŷ of the same N points:
  * NMI (arithmetic normalisation) and ARI, as scikit-learn computes them;
  * accuracy after matching clusters to labels one-to-one with the
    Hungarian algorithm (unmatched clusters count as wrong);
  * ⟨H⟩ = 1/K Σ_k H(p(y | ŷ = k)), the mean entropy (natural log) of the
    labels inside each cluster, and
  * ⟨p_max⟩ = 1/K Σ_k max_y p(y | ŷ = k), the mean purity,
  both over the K non-empty clusters.
NMI, ARI, accuracy and ⟨p_max⟩ are percentages, as the paper reports them.

As an evaluator (`config.evals.<name>.type = "clustering"`): the ground-truth
step segments of `files` are embedded (the mean of the method's outputs named
by `outputs`, e.g. ("embedding", "audio") for MCN's video-audio pair), and, for
each task (video category), k-means with k = the number of distinct steps
shown in that task (B.2: the steps a video of the task may contain) clusters
them; metrics are averaged over tasks. `random/...` are the same metrics for
uniformly random cluster ids (the paper's "Random" row).
"""

from __future__ import annotations

import ml_collections
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import base


def _contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """[num clusters, num labels] counts (rows: distinct cluster ids in sorted order)."""
    _, c = np.unique(clusters, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    table = np.zeros((c.max() + 1, y.max() + 1), np.int64)
    np.add.at(table, (c.reshape(-1), y.reshape(-1)), 1)
    return table


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Percent of points whose cluster is matched to their label (one-to-one, best matching)."""
    table = _contingency(labels, clusters)
    rows, cols = linear_sum_assignment(-table)
    return 100.0 * table[rows, cols].sum() / len(labels)


def entropy_and_purity(labels: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """(⟨H⟩ in nats, ⟨p_max⟩ in percent) over the non-empty clusters (eq. B.1, B.2)."""
    table = _contingency(labels, clusters).astype(np.float64)
    p = table / table.sum(axis=1, keepdims=True)
    logs = np.log(np.where(p > 0, p, 1.0))
    entropy = -np.sum(p * logs, axis=1)
    return float(entropy.mean()), 100.0 * float(p.max(axis=1).mean())


def clustering_metrics(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """NMI, ARI, Acc, H and p_max of cluster ids [N] against labels [N]."""
    labels, clusters = np.asarray(labels).reshape(-1), np.asarray(clusters).reshape(-1)
    if labels.shape != clusters.shape or not len(labels):
        raise ValueError(f"need equally many labels and cluster ids (> 0), got {labels.shape} "
                         f"and {clusters.shape}")
    entropy, purity = entropy_and_purity(labels, clusters)
    return {"NMI": 100.0 * normalized_mutual_info_score(labels, clusters),
            "ARI": 100.0 * adjusted_rand_score(labels, clusters),
            "Acc": hungarian_accuracy(labels, clusters), "H": entropy, "p_max": purity}


def cluster_by_task(points: np.ndarray, labels: np.ndarray, tasks: np.ndarray,
                    restarts: int = 10, seed: int = 0) -> dict[str, float] | None:
    """k-means per task (k = its distinct labels), metrics averaged over tasks.

    Args:
      points: [N, D] vectors.
      labels: int [N] ground-truth steps.
      tasks: [N] task of each point; tasks with fewer than two labels are left out.
      restarts, seed: scikit-learn's `n_init` and `random_state`.

    Returns:
      `clustering_metrics` averaged over tasks, the same for uniformly random
      cluster ids under "random/", and "num_tasks"; None if no task counts.
    """
    rng = np.random.default_rng(seed)
    learned, random = [], []
    for task in np.unique(tasks):
        inside = tasks == task
        k = len(np.unique(labels[inside]))
        if k < 2:
            continue
        clusters = KMeans(k, n_init=restarts, random_state=seed).fit_predict(points[inside])
        learned.append(clustering_metrics(labels[inside], clusters))
        random.append(clustering_metrics(labels[inside], rng.integers(0, k, int(inside.sum()))))
    if not learned:
        return None
    metrics = {k: float(np.mean([m[k] for m in learned])) for k in learned[0]}
    metrics |= {f"random/{k}": float(np.mean([m[k] for m in random])) for k in random[0]}
    metrics["num_tasks"] = float(len(learned))
    return metrics


def cluster_units(units: dict[str, np.ndarray], outputs, groups: np.ndarray, where: str,
                  restarts: int = 10, seed: int = 0) -> dict[str, float] | None:
    """`cluster_by_task` over the embedded units that show a step (label >= 0).

    Args:
      units: from `embed_units` ("label" and the method's outputs).
      outputs: output keys averaged into each unit's vector.
      groups: [U] the group (task, video) each unit is clustered within.
      where: the config key of `outputs`, named when one is missing.
      restarts, seed: k-means settings.
    """
    missing = [k for k in outputs if k not in units]
    if missing:
        raise ValueError(f"{where}: the method's outputs have no {missing}; they have "
                         f"{sorted(k for k in units if k not in base.METADATA_KEYS)}")
    step = units["label"] >= 0
    points = np.mean([units[k][step] for k in outputs], axis=0)
    return cluster_by_task(points, units["label"][step], np.asarray(groups)[step], restarts,
                           seed)


def default_config() -> ml_collections.ConfigDict:
    """Keys of a clustering section (besides `type` and `every`)."""
    return ml_collections.ConfigDict(dict(
        files="",                 # record pattern; "" = config.data.eval_files
        outputs=("embedding",),   # embed_video outputs averaged into the clustered vector
        num_clips=0,              # clips averaged per segment; 0 = data.eval_num_clips
        min_seconds=-1.0,         # widen shorter segments to this; -1 = data.min_caption_seconds
        restarts=10,              # k-means restarts (scikit-learn's n_init)
        seed=0,
    ))


class Evaluator(base.Evaluator):
    """k-means per task over ground-truth step segments, scored against their steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pattern = self.files("files", "eval_files")
        self.units = Units("segment", num_clips=self.settings.num_clips,
                           min_seconds=self.settings.min_seconds)

    def run(self, variables, step):
        units = self.embed_units(variables, self.pattern, self.units, with_text=False)
        metrics = cluster_units(units, self.settings.outputs, units["category"],
                                f"config.evals.{self.name}.outputs", self.settings.restarts,
                                self.settings.seed)
        if metrics is None:
            raise ValueError(f"config.evals.{self.name}: no task in {self.pattern!r} shows two "
                             "or more distinct steps")
        return metrics
