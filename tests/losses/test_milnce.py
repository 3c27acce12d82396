"""MIL-NCE loss family vs NumPy loop references written from the paper's equations."""

import functools

import jax
import numpy as np
import pytest

from vtlearn.losses import milnce

KINDS = ("milnce", "nce", "binary", "ranking", "max_nce", "attn_nce")
NEGATIVES = ("xy", "y|x", "x|y")
MARGIN = 0.3


# ----------------------------------------------------------------------------
# References: explicit sets P_i and N_i, then eqs. 1, 4, 6, 9 and Table 2a.


def _lse(values):
    values = np.asarray(values, np.float64)
    top = values.max()
    return top + np.log(np.sum(np.exp(values - top)))


def _ref_sets(video, text, text_mask, video_mask, negatives, attention=None):
    """Per sample: (P_i scores, P_i attention logits, N_i scores), from loops."""
    video = video if video.ndim == 3 else video[:, None]
    batch, num_clips, _ = video.shape
    num_texts = text.shape[1]
    sets = []
    for i in range(batch):
        pos, att = [], []
        for a in range(num_clips):
            for k in range(num_texts):
                if video_mask[i, a] and text_mask[i, k]:
                    pos.append(video[i, a] @ text[i, k])
                    if attention is not None:
                        att.append(attention.reshape(batch, num_clips, num_texts)[i, a, k])
        neg = []
        for j in range(batch):
            if j == i:
                continue
            for a in range(num_clips):
                for k in range(num_texts):
                    if negatives in ("xy", "y|x") and video_mask[i, a] and text_mask[j, k]:
                        neg.append(video[i, a] @ text[j, k])
                    if negatives in ("xy", "x|y") and video_mask[j, a] and text_mask[i, k]:
                        neg.append(video[j, a] @ text[i, k])
        sets.append((pos, att, neg))
    return sets


def _ref_loss(kind, video, text, text_mask, negatives, video_mask=None, attention=None):
    """Per-sample losses [B] in float64."""
    video = np.asarray(video, np.float64)
    text = np.asarray(text, np.float64)
    text_mask = np.asarray(text_mask, bool)
    num_clips = video.shape[1] if video.ndim == 3 else 1
    if video_mask is None:
        video_mask = np.ones((video.shape[0], num_clips), bool)
    video_mask = np.asarray(video_mask, bool)
    if kind in ("nce", "binary", "ranking"):  # single instance: anchors only
        text_mask = text_mask & (np.arange(text.shape[1]) == 0)
        video_mask = video_mask & (np.arange(num_clips) == 0)
    losses = []
    for pos, att, neg in _ref_sets(video, text, text_mask, video_mask, negatives, attention):
        if kind in ("milnce", "nce"):  # eq. 1 / eq. 4
            log_num = _lse(pos)
            losses.append(-(log_num - _lse(pos + neg)))
        elif kind == "max_nce":  # eq. 6
            z = max(pos)
            losses.append(-(z - _lse([z] + neg)))
        elif kind == "attn_nce":  # eqs. 7 and 9
            weights = np.exp(np.array(att) - _lse(att))
            z = float(np.sum(weights * np.array(pos)))
            losses.append(-(z - _lse([z] + neg)))
        elif kind == "binary":
            (s,) = pos
            pos_term = -np.log(1.0 / (1.0 + np.exp(-s)))
            neg_term = np.mean([-np.log(1.0 - 1.0 / (1.0 + np.exp(-n))) for n in neg])
            losses.append(pos_term + neg_term)
        elif kind == "ranking":
            (s,) = pos
            losses.append(np.mean([max(0.0, MARGIN - s + n) for n in neg]))
    return np.array(losses)


def _data(seed, batch=4, num_texts=3, dim=5, num_clips=None, scale=0.5):
    rng = np.random.default_rng(seed)
    video_shape = (batch, dim) if num_clips is None else (batch, num_clips, dim)
    video = (scale * rng.standard_normal(video_shape)).astype(np.float32)
    text = (scale * rng.standard_normal((batch, num_texts, dim))).astype(np.float32)
    text_mask = rng.random((batch, num_texts)) < 0.6
    text_mask[:, 0] = True
    attention = rng.standard_normal((batch, num_clips or 1, num_texts)).astype(np.float32)
    video_mask = None
    if num_clips is not None:
        video_mask = rng.random((batch, num_clips)) < 0.6
        video_mask[:, 0] = True
    return video, text, text_mask, video_mask, attention


def _loss(kind, video, text, text_mask, negatives="xy", video_mask=None, attention=None, **kw):
    if kind != "attn_nce":
        attention = None
    elif np.ndim(video) == 2 and attention is not None:
        attention = attention.reshape(text.shape[:2])
    fn = jax.jit(
        functools.partial(
            milnce.milnce_family_loss, kind=kind, negatives=negatives, margin=MARGIN, **kw
        )
    )
    return fn(video, text, text_mask, attention_logits=attention, video_mask=video_mask)


# ----------------------------------------------------------------------------
# Values and gradients.


@pytest.mark.parametrize("negatives", NEGATIVES)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_matches_reference(kind, negatives):
    video, text, text_mask, _, attention = _data(seed=0)
    mean, per_sample = _loss(kind, video, text, text_mask, negatives, attention=attention)
    expected = _ref_loss(kind, video, text, text_mask, negatives, attention=attention)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, expected.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ("milnce", "nce", "max_nce", "attn_nce"))
def test_video_candidates_match_reference(kind):
    video, text, text_mask, video_mask, attention = _data(seed=1, num_clips=3)
    _, per_sample = _loss(kind, video, text, text_mask, "xy", video_mask, attention)
    expected = _ref_loss(kind, video, text, text_mask, "xy", video_mask, attention)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5, atol=1e-6)


def _finite_difference(fn, x, eps=1e-6):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        grad[idx] = (fn(x + step) - fn(x - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    "kind,negatives", [(k, "xy") for k in KINDS] + [("milnce", "y|x"), ("milnce", "x|y")]
)
def test_gradients_match_finite_differences(kind, negatives):
    video, text, text_mask, _, attention = _data(seed=2, batch=3, dim=4)
    attention = attention.reshape(text.shape[:2])

    def jax_loss(v, t, a):
        return milnce.milnce_family_loss(
            v, t, text_mask, kind=kind, negatives=negatives, margin=MARGIN,
            attention_logits=a if kind == "attn_nce" else None,
        )[0]

    grads = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2)))(video, text, attention)

    def ref(v, t, a):
        return _ref_loss(kind, v, t, text_mask, negatives, attention=a).mean()

    np.testing.assert_allclose(
        grads[0], _finite_difference(lambda v: ref(v, text, attention), video), atol=1e-5
    )
    np.testing.assert_allclose(
        grads[1], _finite_difference(lambda t: ref(video, t, attention), text), atol=1e-5
    )
    if kind == "attn_nce":
        expected = _finite_difference(lambda a: ref(video, text, a), attention)
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(grads[2], expected, atol=1e-5)


def test_stable_for_large_scores():
    video, text, text_mask, _, _ = _data(seed=3, scale=12.0)
    for kind in ("milnce", "max_nce"):
        _, per_sample = _loss(kind, video, text, text_mask)
        expected = _ref_loss(kind, video, text, text_mask, "xy")
        assert np.abs(expected).max() > 100
        np.testing.assert_allclose(per_sample, expected, rtol=1e-4)


# ----------------------------------------------------------------------------
# Masking, reductions, vmap.


@pytest.mark.parametrize("kind", KINDS)
def test_masked_candidates_are_ignored(kind):
    video, text, text_mask, _, attention = _data(seed=4)
    garbage = text.copy()
    garbage[~text_mask] = 50.0
    attention_garbage = attention.copy().reshape(text.shape[:2])
    attention_garbage[~text_mask] = 50.0
    base = _loss(kind, video, text, text_mask, attention=attention)[1]
    noisy = _loss(kind, video, garbage, text_mask, attention=attention_garbage)[1]
    np.testing.assert_allclose(noisy, base, rtol=1e-6)

    grad = jax.jit(jax.grad(
        lambda t: milnce.milnce_family_loss(
            video, t, text_mask, kind=kind,
            attention_logits=attention_garbage if kind == "attn_nce" else None,
        )[0]
    ))(garbage)
    assert np.all(np.asarray(grad)[~text_mask] == 0)
    assert np.abs(np.asarray(grad)[text_mask]).max() > 0


def test_single_candidate_reduces_to_nce():
    video, text, text_mask, _, attention = _data(seed=5)
    nce = _loss("nce", video, text, text_mask)[1]
    expected = _ref_loss("nce", video, text, text_mask, "xy")
    np.testing.assert_allclose(nce, expected, rtol=1e-5)
    one = np.ones((text.shape[0], 1), bool)
    for kind in ("milnce", "max_nce", "attn_nce", "cat_nce"):
        per_sample = _loss(kind, video, text[:, :1], one, attention=attention[..., :1])[1]
        np.testing.assert_allclose(per_sample, nce, rtol=1e-6)
    # With several candidates MIL-NCE differs from NCE.
    assert not np.allclose(_loss("milnce", video, text, text_mask)[1], nce)


def test_vmap_over_groups_equals_per_group_loop():
    groups, per_group = 3, 4
    video, text, text_mask, _, _ = _data(seed=6, batch=groups * per_group)
    grouped = jax.jit(
        jax.vmap(lambda v, t, m: milnce.milnce_family_loss(v, t, m, kind="milnce")[1])
    )(
        video.reshape(groups, per_group, -1),
        text.reshape(groups, per_group, *text.shape[1:]),
        text_mask.reshape(groups, per_group, -1),
    )
    for g in range(groups):
        rows = slice(g * per_group, (g + 1) * per_group)
        expected = _ref_loss("milnce", video[rows], text[rows], text_mask[rows], "xy")
        np.testing.assert_allclose(grouped[g], expected, rtol=1e-5)
    global_loss = _ref_loss("milnce", video, text, text_mask, "xy")
    assert not np.allclose(np.asarray(grouped).reshape(-1), global_loss)


# ----------------------------------------------------------------------------
# Negatives: layout and subsampling (Table 2b).


def test_pair_scores_layout():
    video, text, text_mask, video_mask, _ = _data(seed=7, batch=3, num_texts=2, num_clips=2)
    s = milnce.pair_scores(video, text, text_mask, video_mask=video_mask)
    batch, num_clips, num_texts = 3, 2, 2
    for i in range(batch):
        for a in range(num_clips):
            for k in range(num_texts):
                p = a * num_texts + k
                np.testing.assert_allclose(s.positive[i, p], video[i, a] @ text[i, k], rtol=1e-5)
                assert s.positive_mask[i, p] == (video_mask[i, a] and text_mask[i, k])
                for j in range(batch):
                    n = (a * batch + j) * num_texts + k
                    np.testing.assert_allclose(
                        s.text_negative[i, n], video[i, a] @ text[j, k], rtol=1e-5
                    )
                    assert s.text_negative_mask[i, n] == (
                        j != i and video_mask[i, a] and text_mask[j, k]
                    )
                    n = (j * num_clips + a) * num_texts + k
                    np.testing.assert_allclose(
                        s.video_negative[i, n], video[j, a] @ text[i, k], rtol=1e-5
                    )
                    assert s.video_negative_mask[i, n] == (
                        j != i and video_mask[j, a] and text_mask[i, k]
                    )


def _selected_reference(video, text, text_mask, scores):
    """MIL-NCE (eq. 1) restricted to the negatives kept in `scores` (Kv = 1)."""
    batch, num_texts = text_mask.shape
    out = []
    for i in range(batch):
        pos = [video[i] @ text[i, k] for k in range(num_texts) if text_mask[i, k]]
        neg = []
        for j in range(batch):
            for k in range(num_texts):
                if scores.text_negative_mask[i, j * num_texts + k]:
                    neg.append(video[i] @ text[j, k])
                if scores.video_negative_mask[i, j * num_texts + k]:
                    neg.append(video[j] @ text[i, k])
        out.append(_lse(pos + neg) - _lse(pos))
    return np.array(out)


@pytest.mark.parametrize("negatives", NEGATIVES)
def test_subsampled_negatives(negatives):
    video, text, text_mask, _, _ = _data(seed=8, batch=6)
    num_negatives = 5
    full = milnce.pair_scores(video, text, text_mask, negatives=negatives)
    key = jax.random.key(0)
    kept = milnce.subsample_negatives(full, num_negatives, negatives, key)

    text_quota, video_quota = {"xy": (3, 2), "y|x": (5, 0), "x|y": (0, 5)}[negatives]
    for mask, full_mask, quota in (
        (kept.text_negative_mask, full.text_negative_mask, text_quota),
        (kept.video_negative_mask, full.video_negative_mask, video_quota),
    ):
        mask, full_mask = np.asarray(mask), np.asarray(full_mask)
        assert not np.any(mask & ~full_mask)
        np.testing.assert_array_equal(mask.sum(-1), np.minimum(full_mask.sum(-1), quota))

    _, per_sample = _loss("milnce", video, text, text_mask, negatives,
                          num_negatives=num_negatives, rng=key)
    expected = _selected_reference(video, text, text_mask, kept)
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5)

    again = milnce.subsample_negatives(full, num_negatives, negatives, key)
    np.testing.assert_array_equal(again.text_negative_mask, kept.text_negative_mask)
    other = milnce.subsample_negatives(full, num_negatives, negatives, jax.random.key(1))
    assert not (
        np.array_equal(other.text_negative_mask, kept.text_negative_mask)
        and np.array_equal(other.video_negative_mask, kept.video_negative_mask)
    )


def test_enough_negatives_keeps_all():
    video, text, text_mask, _, _ = _data(seed=9)
    full = _loss("milnce", video, text, text_mask)[1]
    sub = _loss("milnce", video, text, text_mask, num_negatives=1000, rng=jax.random.key(3))[1]
    np.testing.assert_allclose(sub, full, rtol=1e-6)


def test_subsampling_is_uniform():
    video, text, text_mask, _, _ = _data(seed=10, batch=5, num_texts=2)
    text_mask[:] = True
    full = milnce.pair_scores(video, text, text_mask, negatives="y|x")
    keys = jax.random.split(jax.random.key(4), 1000)
    masks = jax.jit(
        jax.vmap(lambda k: milnce.subsample_negatives(full, 3, "y|x", k).text_negative_mask)
    )(keys)
    frequency = np.asarray(masks).mean(0)[np.asarray(full.text_negative_mask)]
    available = int(full.text_negative_mask[0].sum())  # 8 per sample
    np.testing.assert_allclose(frequency, 3 / available, atol=0.06)


# ----------------------------------------------------------------------------
# Cat+NCE and argument checks.


def test_concat_candidate_tokens_matches_loop():
    rng = np.random.default_rng(11)
    tokens = rng.integers(1, 9, size=(3, 3, 4))
    tokens[rng.random(tokens.shape) < 0.4] = 0
    mask = np.array([[True, True, True], [True, False, True], [True, False, False]])
    out = np.asarray(milnce.concat_candidate_tokens(tokens, mask))
    assert out.shape == (3, 1, 12)
    for b in range(3):
        words = [w for k in range(3) if mask[b, k] for w in tokens[b, k] if w != 0]
        np.testing.assert_array_equal(out[b, 0], words + [0] * (12 - len(words)))


def test_cat_nce_requires_concatenated_text():
    video, text, text_mask, _, _ = _data(seed=12)
    with pytest.raises(ValueError, match="cat_nce"):
        milnce.milnce_family_loss(video, text, text_mask, kind="cat_nce")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "softmax"},
        {"negatives": "x,y"},
        {"kind": "attn_nce"},
        {"kind": "milnce", "attention_logits": np.zeros((4, 3))},
        {"num_negatives": 4},
        {"rng": jax.random.key(0)},
    ],
)
def test_invalid_arguments_raise(kwargs):
    video, text, text_mask, _, _ = _data(seed=13)
    with pytest.raises(ValueError):
        milnce.milnce_family_loss(video, text, text_mask, **kwargs)


def _release_loss(video, text):
    """The MIL-NCE release's loss.py, in NumPy: x = v t^T viewed [B, B, K];
    numerator logsumexp over K of x[i, i, :]; denominator logsumexp over
    cat(x, x.permute(1, 0, 2)) along dim 1, i.e. x[i, :, :] and x[:, i, :]."""
    batch, num_texts, _ = text.shape
    x = np.einsum("id,jkd->ijk", video.astype(np.float64), text.astype(np.float64))
    out = []
    for i in range(batch):
        numerator = _lse(x[i, i, :])
        denominator = _lse(np.concatenate([x[i].reshape(-1), x[:, i].reshape(-1)]))
        out.append(denominator - numerator)
    return np.array(out)


def test_denominator_positives_2_is_the_release_loss():
    rng = np.random.default_rng(7)
    video = rng.normal(size=(5, 8)).astype(np.float32)
    text = rng.normal(size=(5, 3, 8)).astype(np.float32)
    mask = np.ones((5, 3), bool)
    _, release = milnce.milnce_family_loss(video, text, mask, denominator_positives=2)
    np.testing.assert_allclose(release, _release_loss(video, text), rtol=1e-5)
    _, paper = milnce.milnce_family_loss(video, text, mask)
    assert np.all(np.asarray(release) > np.asarray(paper))  # the extra positive mass
    with pytest.raises(ValueError, match="denominator_positives must be 1"):
        milnce.milnce_family_loss(video, text, mask, denominator_positives=3)
    with pytest.raises(ValueError, match="NCE kinds"):
        milnce.milnce_family_loss(video, text, mask, kind="ranking", denominator_positives=2)
