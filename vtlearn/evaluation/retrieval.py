"""Zero-shot text-video retrieval metrics: R@K, median and mean rank.

The protocol of MIL-NCE (§4.2, following HowTo100M): a similarity matrix whose
query `i` has item `i` as its only correct answer; recall at K is the
percentage of queries whose item is ranked in the top K, MedR/MeanR the
median/mean 1-based rank of the correct item.

Ties are broken pessimistically: an item scoring exactly as much as the
correct one is ranked before it. A model that gives every item the same
similarity therefore gets the worst rank, never a perfect score.

Recalls are percentages (0-100), as the papers report them.

As an evaluator (`config.evals.<name>.type = "retrieval"`): every caption of
`files` (default `config.data.eval_files`) is a query; its (widened) window
is embedded as `num_clips` clips whose outputs are averaged, and the method
scores queries against windows (`Method.similarity`; dot products unless
the method says otherwise). Captions with identical text (the lab's clean
step names) are grouped, see `grouped_retrieval_metrics`.

`query` and `outputs` choose the modalities (MCN's T→V, A→V, T→VA): queries
are the captions' text embeddings ("text") or an output of the method's
`embed_video` for the same windows (e.g. "audio"); with `outputs` set, an
item's score is the mean of the query's dot products with those outputs
(("embedding", "audio") is T→VA), else the method's `similarity` decides.
Metric names keep "t2v" for query → item and "v2t" for item → query.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import numpy as np

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import base


def best_correct_ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best correct item, ties pessimistic.

    Args:
        scores: [N_query, N_item], higher is more similar; all finite.
        correct: bool [N_query, N_item], each query's correct items (>= 1).

    Returns:
        int [N_query]: 1 + the number of incorrect items scoring at least as
        much as the query's best correct item.

    Raises:
        ValueError: for a NaN/Inf score (a NaN would rank first under `>=`).
    """
    scores = np.asarray(scores)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"similarity has {np.sum(~np.isfinite(scores))} non-finite values: "
                         "an embedding is NaN/Inf, so no rank is meaningful")
    best = np.max(np.where(correct, scores, -np.inf), axis=1)
    return 1 + np.sum(~correct & (scores >= best[:, None]), axis=1)


def correct_item_ranks(similarity: np.ndarray) -> np.ndarray:
    """1-based rank of item `i` among all items for query `i`, ties pessimistic.

    Args:
        similarity: [N_query, N_item] scores, higher is more similar,
            N_query <= N_item (extra items are distractors).

    Returns:
        int [N_query] ranks in [1, N_item].
    """
    similarity = np.asarray(similarity)
    if similarity.ndim != 2 or similarity.shape[0] > similarity.shape[1]:
        raise ValueError(f"need a [N_query, N_item] matrix with N_query <= N_item, "
                         f"got shape {similarity.shape}")
    return best_correct_ranks(similarity, np.eye(*similarity.shape, dtype=bool))


def _summary(ranks: np.ndarray, recall_at: Sequence[int]) -> dict[str, float]:
    metrics = {f"R@{k}": 100.0 * float(np.mean(ranks <= k)) for k in recall_at}
    metrics["MedR"] = float(np.median(ranks))
    metrics["MeanR"] = float(np.mean(ranks))
    return metrics


def retrieval_metrics(
    similarity: np.ndarray, recall_at: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall at K, median and mean rank of one retrieval direction.

    Args:
        similarity: [N_query, N_item]; the correct item of query `i` is item `i`.
        recall_at: the K of the reported recalls.

    Returns:
        {"R@K": percent for each K, "MedR": median rank, "MeanR": mean rank}.
    """
    return _summary(correct_item_ranks(similarity), recall_at)


def text_video_retrieval_metrics(
    similarity: np.ndarray, recall_at: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Text-to-video and video-to-text metrics of a paired similarity matrix.

    Args:
        similarity: [N, N]; `similarity[i, j]` scores text `i` against video
            `j`, and text `i` belongs with video `i`.
        recall_at: the K of the reported recalls.

    Returns:
        `retrieval_metrics` of both directions, keys prefixed "t2v/" (queries
        are texts) and "v2t/" (queries are videos, the transposed matrix).
    """
    similarity = np.asarray(similarity)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"need a square [N, N] matrix, got shape {similarity.shape}")
    t2v = retrieval_metrics(similarity, recall_at)
    v2t = retrieval_metrics(similarity.T, recall_at)
    return {f"t2v/{k}": v for k, v in t2v.items()} | {f"v2t/{k}": v for k, v in v2t.items()}


def paired_retrieval_metrics(
    similarity: np.ndarray, num_pairs: int | None = None, recall_at: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """`text_video_retrieval_metrics` of a benchmark whose missing videos count as misses.

    Args:
        similarity: [P, P] over the P pairs whose video could be embedded; text
            i belongs with video i.
        num_pairs: the benchmark's N >= P pairs (default P). Each of the N - P
            pairs without a video is a miss in both directions, ranked N, so
            recalls keep the benchmark's denominator (MSR-VTT 1k-A: 1,000).
        recall_at: the K of the reported recalls.

    Returns:
        Keys "t2v/..." and "v2t/..." as in `text_video_retrieval_metrics`.
    """
    similarity = np.asarray(similarity)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"need a square [P, P] matrix, got shape {similarity.shape}")
    p = len(similarity)
    n = p if num_pairs is None else num_pairs
    if n < p:
        raise ValueError(f"num_pairs={n} is less than the {p} embedded pairs")
    misses = np.full(n - p, n)
    out = {}
    for direction, matrix in (("t2v", similarity), ("v2t", similarity.T)):
        ranks = np.concatenate([correct_item_ranks(matrix) if p else [], misses])
        out |= {f"{direction}/{k}": v for k, v in _summary(ranks, recall_at).items()}
    return out


def clip_averaged_similarity(
    text: np.ndarray, video: np.ndarray, clip_mask: np.ndarray | None = None
) -> np.ndarray:
    """Text-video similarity when each video segment is embedded as several clips.

    A test segment longer than a training clip (e.g. a YouCook2 segment vs
    MIL-NCE's 3.2 s clips) is embedded by running the video model on several
    clips of it and averaging their joint-space embeddings; the segment's
    score is the dot product with that mean. (The dot product is linear, so
    this equals the mean of the per-clip scores.)

    Args:
        text: [N_text, D] narration embeddings.
        video: [N_video, C, D] embeddings of C clips per segment.
        clip_mask: [N_video, C] bool valid clips (segments shorter than C
            clips are padded); None means all valid. Each segment needs at
            least one valid clip.

    Returns:
        [N_text, N_video] similarities.
    """
    video = np.asarray(video, np.float64)
    if clip_mask is None:
        clip_mask = np.ones(video.shape[:2], bool)
    clip_mask = np.asarray(clip_mask, bool)
    counts = clip_mask.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError("every video segment needs at least one valid clip")
    mean = np.sum(np.where(clip_mask[..., None], video, 0.0), axis=1) / counts[:, None]
    return np.asarray(text, np.float64) @ mean.T


def grouped_retrieval_metrics(
    similarity: np.ndarray, groups: np.ndarray, recall_at: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Both directions when several segments share one text (e.g. a step name).

    Segments with equal `groups` have the same text, so index-based ground
    truth would be ambiguous. Text-to-video asks one query per distinct text;
    any video of its group is correct and the rank is that of the best one.
    Video-to-text ranks the distinct texts; the video's own group is correct.
    With all groups distinct this equals `text_video_retrieval_metrics`.

    Args:
        similarity: [N, N]; text i vs video j, text i belongs with video i.
        groups: int [N] text group of each segment.
        recall_at: the K of the reported recalls.

    Returns:
        Keys "t2v/..." and "v2t/..." as in `text_video_retrieval_metrics`.
    """
    similarity = np.asarray(similarity)
    groups = np.asarray(groups)
    first = np.unique(groups, return_index=True)[1]
    same = groups[first][:, None] == groups[None, :]  # [G, N]
    t2v = best_correct_ranks(similarity[first], same)  # one text per group
    v2t = best_correct_ranks(similarity[first].T, same.T)  # [N videos, G texts]
    return ({f"t2v/{k}": v for k, v in _summary(t2v, recall_at).items()}
            | {f"v2t/{k}": v for k, v in _summary(v2t, recall_at).items()})


def grouped_chance_recall(groups: np.ndarray, k: int) -> dict[str, float]:
    """Expected R@k (percent) of `grouped_retrieval_metrics` for random scores.

    Text-to-video: a query whose group has g of the N videos is a hit when one
    of them lands in the top k, probability 1 − C(N−g, k) / C(N, k).
    Video-to-text: the own text is one of G, probability min(k, G) / G.
    (Ties have probability zero for continuous random scores.)

    Args:
        groups: int [N] text group of each segment.
        k: the cut-off.

    Returns:
        {"t2v/R@k_chance": ..., "v2t/R@k_chance": ...}.
    """
    _, sizes = np.unique(np.asarray(groups), return_counts=True)
    n, num_groups = int(sizes.sum()), len(sizes)
    # C(N−g, k)/C(N, k) = Π_{i<k} (N−g−i)/(N−i), zero once N−g−i ≤ 0.
    steps = np.arange(min(k, n))
    miss = np.prod(np.clip((n - sizes[:, None] - steps) / (n - steps), 0.0, None), axis=1)
    return {f"t2v/R@{k}_chance": 100.0 * float(np.mean(1.0 - miss)),
            f"v2t/R@{k}_chance": 100.0 * min(k, num_groups) / num_groups}


def default_config() -> ml_collections.ConfigDict:
    """Keys of a retrieval section (besides `type` and `every`)."""
    return ml_collections.ConfigDict(dict(
        files="",       # record pattern; "" = config.data.eval_files
        num_clips=0,    # clips averaged per caption window; 0 = data.eval_num_clips
        recall_at=(1, 5, 10),
        query="text",   # "text", or an embed_video output key (e.g. "audio")
        outputs=(),     # embed_video output keys whose scores are averaged; () = the method's
    ))


def multimodal_similarity(query: np.ndarray, items: dict[str, np.ndarray],
                          keys: Sequence[str]) -> np.ndarray:
    """[Q, N]: the mean over `keys` of query [Q, D] · items[key] [N, D]."""
    query = np.asarray(query, np.float64)
    return sum(query @ np.asarray(items[k], np.float64).T for k in keys) / len(keys)


class Evaluator(base.Evaluator):
    """Zero-shot text-video retrieval over the captions of `files`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pattern = self.files("files", "eval_files")
        self.units = Units("caption", num_clips=self.settings.num_clips)
        if self.settings.query != "text" and not self.settings.outputs:
            raise ValueError(f"config.evals.{self.name}.query={self.settings.query!r} needs "
                             f"config.evals.{self.name}.outputs (the outputs to score it against)")

    def run(self, variables, step):
        units = self.embed_units(variables, self.pattern, self.units)
        _, groups = np.unique(units["text_ids"], axis=0, return_inverse=True)
        groups = groups.reshape(-1)
        for key in (self.settings.query, *self.settings.outputs):
            if key not in units:
                raise ValueError(f"config.evals.{self.name}: the method's outputs have no "
                                 f"{key!r}; they have {sorted(k for k in units if k != 'text')}")
        if self.settings.outputs:
            similarity = multimodal_similarity(units[self.settings.query], units,
                                               tuple(self.settings.outputs))
        else:
            similarity = self.method.similarity(units["text"], units)
        metrics = grouped_retrieval_metrics(similarity, groups, tuple(self.settings.recall_at))
        for k in self.settings.recall_at:
            metrics |= grouped_chance_recall(groups, k)
        metrics["num_queries"] = float(groups.max() + 1)
        return metrics
