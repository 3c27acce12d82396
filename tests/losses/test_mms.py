"""MCN's MMS loss (eq. 2-3) against a NumPy loop of the equation."""

import jax
import jax.numpy as jnp
import numpy as np

from vtlearn.losses.mms import masked_margin_softmax, multimodal_mms


def reference(x, y, margin, valid):
    """-1/B Σ_i [log e^{s_ii-δ}/(e^{s_ii-δ} + Σ_{k≠i} e^{s_ki}) + (the same over j, s_ij)]."""
    s = x.astype(np.float64) @ y.astype(np.float64).T
    idx = np.flatnonzero(valid)
    total = 0.0
    for i in idx:
        pos = np.exp(s[i, i] - margin)
        col = pos + sum(np.exp(s[k, i]) for k in idx if k != i)
        row = pos + sum(np.exp(s[i, j]) for j in idx if j != i)
        total += np.log(pos / col) + np.log(pos / row)
    return -total / len(idx)


def test_mms_matches_the_loop_with_a_margin_and_masked_pairs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 9, 5)).astype(np.float32)
    valid = np.ones(9, bool)
    valid[[2, 7]] = False
    for margin in (0.0, 0.001, 0.5):
        np.testing.assert_allclose(masked_margin_softmax(x, y, margin, valid),
                                   reference(x, y, margin, valid), rtol=1e-5)
    np.testing.assert_allclose(masked_margin_softmax(x, y, 0.2),
                               reference(x, y, 0.2, np.ones(9, bool)), rtol=1e-5)


def test_masked_pairs_get_no_gradient_and_an_empty_batch_is_finite():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 6, 4)).astype(np.float32)
    valid = np.array([1, 1, 0, 1, 0, 1], bool)
    gx = jax.grad(lambda a: masked_margin_softmax(a, y, 0.001, valid))(x)
    assert np.all(np.isfinite(gx)) and np.all(gx[~valid] == 0) and np.any(gx[valid] != 0)
    none = np.zeros(6, bool)
    value, grad = jax.value_and_grad(lambda a: masked_margin_softmax(a, y, 0.001, none))(x)
    assert value == 0.0 and np.all(grad == 0)


def test_multimodal_mms_sums_the_pairs_of_eq_2():
    rng = np.random.default_rng(2)
    emb = {m: jnp.asarray(rng.normal(size=(5, 3)), jnp.float32) for m in "vat"}
    total, terms = multimodal_mms(emb, (("t", "a"), ("v", "t"), ("a", "v")), 0.001)
    assert sorted(terms) == ["a_v", "t_a", "v_t"]
    expected = sum(reference(np.asarray(emb[a]), np.asarray(emb[b]), 0.001, np.ones(5, bool))
                   for a, b in (("t", "a"), ("v", "t"), ("a", "v")))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_bags_of_positives_give_mil_nce():
    """With a bag P(i) per row/column: log Σ_P e^{s-δ} / (Σ_P e^{s-δ} + Σ_not P e^{s}), both ways."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 6, 4)).astype(np.float32)
    positives = np.eye(6, dtype=bool)
    positives[0, 1] = positives[1, 0] = positives[3, 4] = True  # not symmetric everywhere
    valid = np.array([1, 1, 1, 1, 1, 0], bool)
    s = x.astype(np.float64) @ y.astype(np.float64).T
    total = 0.0
    for i in np.flatnonzero(valid):
        row_pos = sum(np.exp(s[i, j] - 0.1) for j in range(6) if valid[j] and positives[i, j])
        row_neg = sum(np.exp(s[i, j]) for j in range(6) if valid[j] and not positives[i, j])
        col_pos = sum(np.exp(s[j, i] - 0.1) for j in range(6) if valid[j] and positives[j, i])
        col_neg = sum(np.exp(s[j, i]) for j in range(6) if valid[j] and not positives[j, i])
        total += np.log(row_pos / (row_pos + row_neg)) + np.log(col_pos / (col_pos + col_neg))
    np.testing.assert_allclose(masked_margin_softmax(x, y, 0.1, valid, positives),
                               -total / valid.sum(), rtol=1e-5)
