"""MIL-NCE and the losses of its ablation study (Miech et al., CVPR 2020).

Notation follows the paper: `x` is a video clip, `y` a narration and the score
of a pair is the dot product `f(x)^T g(y)` of their embeddings (eq. 2). For
sample `i` of the batch:

* Positive candidates `P_i` (§3.2, §4.1) are every valid pair `(x_{i,a}, y_{i,k})`
  of its clips (`Kv`, usually 1) and its candidate narrations (`K`: the anchor
  narration `k = 0` and the narrations nearest to it in time).
* Negatives `N_i` (§4.1, Table 2e) are built from the other samples `j != i`
  of the (global) batch:

  - "y|x" (fix the clip, sample narrations): `(x_{i,a}, y_{j,k})` for every
    valid clip `a` of `i` and every valid candidate narration `k` of `j`;
  - "x|y" (fix the narration, sample clips): `(x_{j,a}, y_{i,k})` for every
    valid clip `a` of `j` and every valid candidate narration `k` of `i`;
  - "xy" (the paper's symmetric default): the union of both.

  With this choice, MIL-NCE with `K = Kv = 1` is exactly NCE (eq. 4), and the
  "y|x"/"x|y" sets of a sample have the same size, so "xy" samples narration
  and clip negatives equally, as §4.3 describes.

Every loss here is a pure function of arrays without collectives: the caller
passes global (gathered) embeddings, or reshapes them into groups and vmaps a
loss to get per-group negatives. All losses are computed in log space.

Masked candidates (`text_mask`/`video_mask` False) never enter a loss; their
embeddings must still be finite (padding with zeros is fine), because their
scores are computed before being masked.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from vtlearn.data.text import PAD_ID

Kind = Literal["milnce", "nce", "binary", "ranking", "max_nce", "attn_nce", "cat_nce"]
Negatives = Literal["xy", "y|x", "x|y"]

KINDS: tuple[str, ...] = get_args(Kind)
NEGATIVES: tuple[str, ...] = get_args(Negatives)
_SINGLE_INSTANCE_KINDS = ("nce", "binary", "ranking", "cat_nce")


class PairScores(NamedTuple):
    """Scores of the positive and negative pairs of every sample of a batch.

    With `B` samples, `Kv` clips and `K` candidate narrations per sample:

    Attributes:
        positive: [B, Kv*K]; `positive[i, a*K + k] = x_{i,a} . y_{i,k}`.
        positive_mask: [B, Kv*K] bool; valid pairs of `P_i`.
        text_negative: [B, Kv*B*K]; "y|x" negatives,
            `text_negative[i, (a*B + j)*K + k] = x_{i,a} . y_{j,k}`.
        text_negative_mask: [B, Kv*B*K] bool; True for `j != i` and valid
            `a`, `k` (all False when the "y|x" negatives are not used).
        video_negative: [B, B*Kv*K]; "x|y" negatives,
            `video_negative[i, (j*Kv + a)*K + k] = x_{j,a} . y_{i,k}`.
        video_negative_mask: [B, B*Kv*K] bool; as `text_negative_mask`.
    """

    positive: jax.Array
    positive_mask: jax.Array
    text_negative: jax.Array
    text_negative_mask: jax.Array
    video_negative: jax.Array
    video_negative_mask: jax.Array


def pair_scores(
    video: jax.Array,
    text: jax.Array,
    text_mask: jax.Array,
    *,
    negatives: Negatives = "xy",
    video_mask: jax.Array | None = None,
) -> PairScores:
    """Scores `f(x)^T g(y)` (eq. 2) of the sets `P_i` and `N_i` of eq. 1.

    Scores are accumulated in float32 whatever the embedding dtype.

    Args:
        video: [B, D] one clip per sample, or [B, Kv, D] candidate clips.
        text: [B, K, D] candidate narrations; index 0 is the anchor.
        text_mask: [B, K] bool; valid narrations (index 0 always valid).
        negatives: which negatives form `N_i`: "xy", "y|x" or "x|y".
        video_mask: [B, Kv] bool valid clips (index 0 always valid); None
            means all valid.

    Returns:
        The scores and masks, laid out as documented in `PairScores`.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if video.ndim == 2:
        video = video[:, None, :]
    batch, num_clips, _ = video.shape
    if video_mask is None:
        video_mask = jnp.ones((batch, num_clips), bool)
    text_mask = text_mask.astype(bool)
    video_mask = video_mask.astype(bool)

    # scores[i, a, j, k] = x_{i,a} . y_{j,k}
    scores = jnp.einsum("iad,jkd->iajk", video, text, preferred_element_type=jnp.float32)
    other = ~jnp.eye(batch, dtype=bool)

    positive = jnp.einsum("iad,ikd->iak", video, text, preferred_element_type=jnp.float32)
    positive_mask = video_mask[:, :, None] & text_mask[:, None, :]

    # Narrations of other samples j for the clips of i: [i, a, j, k].
    text_negative_mask = (
        video_mask[:, :, None, None] & other[:, None, :, None] & text_mask[None, None, :, :]
    )
    # Clips of other samples j for the narrations of i: [i, j, a, k].
    video_negative = scores.transpose(2, 0, 1, 3)
    video_negative_mask = (
        other[:, :, None, None] & video_mask[None, :, :, None] & text_mask[:, None, None, :]
    )
    text_negative_mask &= negatives in ("xy", "y|x")
    video_negative_mask &= negatives in ("xy", "x|y")

    flat = (batch, -1)
    return PairScores(
        positive=positive.reshape(flat),
        positive_mask=positive_mask.reshape(flat),
        text_negative=scores.reshape(flat),
        text_negative_mask=text_negative_mask.reshape(flat),
        video_negative=video_negative.reshape(flat),
        video_negative_mask=video_negative_mask.reshape(flat),
    )


def _keep_at_most(mask: jax.Array, count: int, rng: jax.Array) -> jax.Array:
    """Keeps `min(count, mask[i].sum())` True entries per row, uniformly at random.

    Args:
        mask: [B, M] bool.
        count: how many entries to keep per row.
        rng: PRNG key.

    Returns:
        [B, M] bool, a subset of `mask`.
    """
    priority = jnp.where(mask, jax.random.uniform(rng, mask.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(priority, axis=-1, stable=True), axis=-1, stable=True)
    return mask & (rank < count)


def subsample_negatives(
    scores: PairScores, num_negatives: int, negatives: Negatives, rng: jax.Array
) -> PairScores:
    """Keeps `num_negatives` negatives per sample, uniformly at random (Table 2b).

    For "xy" the negatives are split equally between the two kinds:
    `num_negatives - num_negatives // 2` narration negatives ("y|x") and
    `num_negatives // 2` clip negatives ("x|y"). A sample with fewer valid
    negatives of a kind keeps all of them.

    Args:
        scores: output of `pair_scores` built with the same `negatives`.
        num_negatives: size of `N_i` to keep, per sample.
        negatives: "xy", "y|x" or "x|y".
        rng: PRNG key; the selection is a deterministic function of it.

    Returns:
        `scores` with the negative masks thinned.
    """
    if num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
    text_count, video_count = {
        "xy": (num_negatives - num_negatives // 2, num_negatives // 2),
        "y|x": (num_negatives, 0),
        "x|y": (0, num_negatives),
    }[negatives]
    text_rng, video_rng = jax.random.split(rng)
    return scores._replace(
        text_negative_mask=_keep_at_most(scores.text_negative_mask, text_count, text_rng),
        video_negative_mask=_keep_at_most(scores.video_negative_mask, video_count, video_rng),
    )


def _negatives(scores: PairScores) -> tuple[jax.Array, jax.Array]:
    """Concatenated negative scores [B, N] and mask [B, N] of `N_i`."""
    return (
        jnp.concatenate([scores.text_negative, scores.video_negative], axis=-1),
        jnp.concatenate([scores.text_negative_mask, scores.video_negative_mask], axis=-1),
    )


def _nce_of_positive(log_positive: jax.Array, scores: PairScores,
                     denominator_positives: int = 1) -> jax.Array:
    """`-log(e^z / (c·e^z + sum_{N_i} e^s))` for a positive log-score `z` [B],
    `c` = `denominator_positives`."""
    negative, negative_mask = _negatives(scores)
    logits = jnp.concatenate([log_positive[:, None] + jnp.log(float(denominator_positives)),
                              negative], axis=-1)
    where = jnp.concatenate([jnp.ones_like(log_positive, bool)[:, None], negative_mask], axis=-1)
    return jax.nn.logsumexp(logits, axis=-1, where=where) - log_positive


def mil_nce(scores: PairScores, denominator_positives: int = 1) -> jax.Array:
    """Negative MIL-NCE objective, eq. 1 (eq. 4, NCE, when `|P_i| = 1`).

    `-log( sum_{P_i} e^s / (c · sum_{P_i} e^s + sum_{N_i} e^s) )` with c = 1
    (eq. 1). c = 2 is the authors' release (`loss.py`: the denominator's
    logsumexp runs over `cat(x, x.permute(1, 0, 2))`, the scores and their
    transpose, so each positive pair appears twice); with "xy" negatives
    and every candidate valid it equals the release's loss.

    Args:
        scores: pair scores from `pair_scores`.
        denominator_positives: c, 1 or 2.

    Returns:
        [B] per-sample losses.
    """
    if denominator_positives not in (1, 2):
        raise ValueError(f"denominator_positives must be 1 (eq. 1) or 2 (the release), got "
                         f"{denominator_positives}")
    return _nce_of_positive(
        jax.nn.logsumexp(scores.positive, axis=-1, where=scores.positive_mask), scores,
        denominator_positives)


def max_nce(scores: PairScores) -> jax.Array:
    """Negative Max+NCE objective, eqs. 5-6 (Appendix A).

    The positive term is the best-scoring pair of `P_i`:
    `-log( max_{P_i} e^s / (max_{P_i} e^s + sum_{N_i} e^s) )`.

    Args:
        scores: pair scores from `pair_scores`.

    Returns:
        [B] per-sample losses.
    """
    best = jnp.max(jnp.where(scores.positive_mask, scores.positive, -jnp.inf), axis=-1)
    return _nce_of_positive(best, scores)


def attn_nce(scores: PairScores, attention_logits: jax.Array) -> jax.Array:
    """Negative Attn+NCE objective, eqs. 7-9 (Appendix A).

    With attention `a = softmax_{P_i}(attention_logits)` (eq. 7) and
    `z = sum_{P_i} a * s`, the loss is `-log( e^z / (e^z + sum_{N_i} e^s) )`
    (eq. 9; the numerator is printed there without the exponential, a typo:
    without it the ratio is not a probability and its log may be undefined).

    The attention logits come from a model head: `attention_logits[i, a, k]`
    must be `f_a(x_{i,a})^T g_a(y_{i,k})`, where `f_a`/`g_a` are the video/text
    embedding networks `f`/`g` with their own last 'Linear' layer (Appendix A:
    they share every other layer with `f`/`g`, Fig. 4). Gradients flow into the
    logits, so the head is trained by this loss.

    Args:
        scores: pair scores from `pair_scores`.
        attention_logits: [B, Kv*K] (or any shape reshapeable to it, e.g.
            [B, K] when Kv = 1, [B, Kv, K]).

    Returns:
        [B] per-sample losses.
    """
    logits = attention_logits.reshape(scores.positive.shape).astype(jnp.float32)
    attention = jax.nn.softmax(logits, axis=-1, where=scores.positive_mask)
    pooled = jnp.sum(jnp.where(scores.positive_mask, attention * scores.positive, 0.0), axis=-1)
    return _nce_of_positive(pooled, scores)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the last axis of the entries where `mask`; 0 when none."""
    total = jnp.sum(jnp.where(mask, values, 0.0), axis=-1)
    return total / jnp.maximum(jnp.sum(mask, axis=-1), 1)


def binary_classification(scores: PairScores) -> jax.Array:
    """Sigmoid cross-entropy on positive vs negative pairs (Table 2a).

    Single-instance: the anchor pair `(x_{i,0}, y_{i,0})` has label 1 and every
    pair of `N_i` label 0. Both classes weigh the same:
    `-log sigmoid(s_pos) - mean_{N_i} log(1 - sigmoid(s_neg))`.

    Args:
        scores: pair scores from `pair_scores`.

    Returns:
        [B] per-sample losses.
    """
    negative, negative_mask = _negatives(scores)
    return jax.nn.softplus(-scores.positive[:, 0]) + _masked_mean(
        jax.nn.softplus(negative), negative_mask
    )


def max_margin_ranking(scores: PairScores, margin: float) -> jax.Array:
    """Max-margin ranking loss on positive vs negative pairs (Table 2a).

    Single-instance: `mean_{N_i} max(0, margin - s_pos + s_neg)` with `s_pos`
    the anchor pair's score. With "xy" negatives this averages both the
    clip-fixed and the narration-fixed hinge terms.

    Args:
        scores: pair scores from `pair_scores`.
        margin: the margin.

    Returns:
        [B] per-sample losses.
    """
    negative, negative_mask = _negatives(scores)
    hinge = jax.nn.relu(margin - scores.positive[:, :1] + negative)
    return _masked_mean(hinge, negative_mask)


def milnce_family_loss(
    video: jax.Array,
    text: jax.Array,
    text_mask: jax.Array,
    *,
    kind: Kind = "milnce",
    negatives: Negatives = "xy",
    num_negatives: int | None = None,
    rng: jax.Array | None = None,
    margin: float = 0.1,
    attention_logits: jax.Array | None = None,
    video_mask: jax.Array | None = None,
    denominator_positives: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """One entry point for the losses compared in Table 2 of MIL-NCE.

    kinds:
        "milnce": MIL-NCE, eq. 1, over all valid candidates.
        "nce": NCE, eq. 4: single-instance, only the anchor clip and narration
            of every sample exist (positive and negatives alike).
        "binary": sigmoid cross-entropy, single-instance (Table 2a).
        "ranking": max-margin ranking with `margin`, single-instance (Table 2a).
        "max_nce": Max+NCE, eqs. 5-6.
        "attn_nce": Attn+NCE, eqs. 7-9; needs `attention_logits` (see `attn_nce`).
        "cat_nce": Cat+NCE (Table 2d): NCE where each sample's candidate
            narrations were concatenated into one before the text model, so
            `text` must be [B, 1, D]; see `concat_candidate_tokens`.

    Args:
        video: [B, D] or [B, Kv, D] clip embeddings.
        text: [B, K, D] candidate narration embeddings; index 0 is the anchor.
        text_mask: [B, K] bool valid narrations (index 0 always valid).
        kind: the loss, one of `KINDS`.
        negatives: "xy" (default), "y|x" or "x|y" (Table 2e; module docstring).
        num_negatives: if set, keep this many negatives per sample, drawn with
            `rng` (Table 2b; see `subsample_negatives`). None keeps all.
        rng: PRNG key, required iff `num_negatives` is set.
        margin: margin of "ranking".
        attention_logits: [B, K] or [B, Kv, K]; required iff kind is "attn_nce".
        video_mask: [B, Kv] bool valid clips; None means all valid.
        denominator_positives: how often the positives enter the softmax
            denominator of "milnce"/"nce"/"cat_nce": 1 (eq. 1) or 2 (the
            release's loss; see `mil_nce`).

    Returns:
        (mean loss [], per-sample losses [B]); the mean is over samples.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if (attention_logits is not None) != (kind == "attn_nce"):
        raise ValueError("attention_logits is required for, and only for, kind='attn_nce'")
    if (rng is not None) != (num_negatives is not None):
        raise ValueError("rng is required for, and only for, num_negatives")
    if kind == "cat_nce" and text.shape[1] != 1:
        raise ValueError(
            f"cat_nce needs one concatenated narration per sample, got K={text.shape[1]}"
        )
    if kind in _SINGLE_INSTANCE_KINDS:
        text_mask = text_mask.astype(bool) & (jnp.arange(text.shape[1]) == 0)
        if video.ndim == 3:
            anchor_clip = jnp.arange(video.shape[1]) == 0
            video_mask = anchor_clip if video_mask is None else video_mask & anchor_clip
            video_mask = jnp.broadcast_to(video_mask, video.shape[:2])

    scores = pair_scores(video, text, text_mask, negatives=negatives, video_mask=video_mask)
    if num_negatives is not None:
        scores = subsample_negatives(scores, num_negatives, negatives, rng)

    if denominator_positives != 1 and kind not in ("milnce", "nce", "cat_nce"):
        raise ValueError(f"denominator_positives applies to the NCE kinds, not {kind!r}")
    if kind in ("milnce", "nce", "cat_nce"):
        per_sample = mil_nce(scores, denominator_positives)
    elif kind == "max_nce":
        per_sample = max_nce(scores)
    elif kind == "attn_nce":
        per_sample = attn_nce(scores, attention_logits)
    elif kind == "binary":
        per_sample = binary_classification(scores)
    else:
        per_sample = max_margin_ranking(scores, margin)
    return jnp.mean(per_sample), per_sample


def concat_candidate_tokens(
    tokens: jax.Array, mask: jax.Array, pad_id: int = PAD_ID
) -> jax.Array:
    """Concatenates each sample's candidate narrations into one (Cat+NCE, Table 2d).

    The real tokens of the valid candidates are joined in candidate order
    (anchor first) and packed to the front; all padding goes to the end.
    Tokens of masked candidates are dropped. The result is K times longer than
    one narration (the paper caps a narration at 16 words, Table 1), which the
    max-pooling text model accepts as is.

    Args:
        tokens: [B, K, L] int token ids, `pad_id` marking padding.
        mask: [B, K] bool valid candidates.
        pad_id: the padding id.

    Returns:
        [B, 1, K*L] token ids.
    """
    batch, num_texts, length = tokens.shape
    keep = (tokens != pad_id) & mask.astype(bool)[:, :, None]
    flat = jnp.where(keep, tokens, pad_id).reshape(batch, num_texts * length)
    order = jnp.argsort(~keep.reshape(batch, num_texts * length), axis=-1, stable=True)
    return jnp.take_along_axis(flat, order, axis=-1)[:, None, :]
