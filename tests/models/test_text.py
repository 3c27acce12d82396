"""MIL-NCE text encoder vs a NumPy reference; padding, freezing, optimizer mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vtlearn.models.text import WORD_EMBEDDING_PATH, TextEncoder, param_labels, with_word_embeddings

VOCAB = 12


def small_encoder(**kwargs):
    return TextEncoder(vocab_size=VOCAB, word_dim=6, hidden_dim=10, embedding_dim=4, **kwargs)


def numpy_encoder(params, ids, pad_in_max):
    """Returns (embedding [..., 4], max-pooled hidden words [..., 10])."""
    table = np.asarray(params["word_embd"]["embedding"])
    hidden = np.maximum(table[ids] @ params["fc1"]["kernel"] + params["fc1"]["bias"], 0)
    if pad_in_max:
        pooled = hidden.max(-2)
    else:
        pooled = np.zeros(hidden.shape[:-2] + hidden.shape[-1:], np.float32)
        for index in np.ndindex(ids.shape[:-1]):
            words = hidden[index][ids[index] != 0]
            pooled[index] = words.max(0) if len(words) else 0.0
    return pooled @ params["fc2"]["kernel"] + params["fc2"]["bias"], pooled


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, size=(3, 2, 5)).astype(np.int32)
    ids[0, 0, 2:] = 0
    ids[1, 1, :] = 0  # empty sentence
    return ids


@pytest.mark.parametrize("pad_in_max", [False, True])
def test_matches_numpy_reference(ids, pad_in_max):
    model = small_encoder(pad_in_max=pad_in_max)
    params = model.init(jax.random.key(0), ids)["params"]
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(1), p.shape), params)
    out, pooled = model.apply({"params": params}, ids, return_pooled=True)
    assert out.shape == (3, 2, 4) and pooled.shape == (3, 2, 10)
    want_out, want_pooled = numpy_encoder(params, ids, pad_in_max)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, want_pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.apply({"params": params}, ids), out)


def test_padding_masked_out_by_default(ids):
    model = small_encoder()
    params = model.init(jax.random.key(0), ids)["params"]
    padded = np.concatenate([ids, np.zeros_like(ids)], axis=-1)
    np.testing.assert_allclose(
        model.apply({"params": params}, padded),
        model.apply({"params": params}, ids),
        rtol=1e-5,
        atol=1e-6,
    )
    released = small_encoder(pad_in_max=True)
    big_pad_row = params["word_embd"]["embedding"].at[0].set(50.0)
    params = {**params, "word_embd": {"embedding": big_pad_row}}
    assert not np.allclose(
        released.apply({"params": params}, padded), released.apply({"params": params}, ids)
    )


def test_empty_sentence_is_fc2_bias_with_finite_gradients(ids):
    model = small_encoder(freeze_word_embeddings=False)
    params = model.init(jax.random.key(0), ids)["params"]
    params["fc2"]["bias"] = jnp.arange(4.0)
    out = model.apply({"params": params}, ids)
    np.testing.assert_allclose(out[1, 1], np.arange(4.0))
    grads = jax.grad(lambda p: model.apply({"params": p}, ids).sum())(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_frozen_embeddings_get_zero_gradient_and_no_update(ids):
    frozen, trainable = small_encoder(freeze_word_embeddings=True), small_encoder()
    params = frozen.init(jax.random.key(0), ids)["params"]

    def grad_of(model):
        return jax.grad(lambda p: jnp.sum(model.apply({"params": p}, ids) ** 2))(params)

    assert np.all(grad_of(frozen)["word_embd"]["embedding"] == 0)
    assert np.any(grad_of(trainable)["word_embd"]["embedding"] != 0)
    assert frozen.frozen_param_paths() == (WORD_EMBEDDING_PATH,)
    assert trainable.frozen_param_paths() == ()

    tree = {"text": params, "video": {"w": jnp.ones(3)}}
    labels = param_labels(tree, frozen.frozen_param_paths(), prefix=("text",))
    assert labels["text"]["word_embd"]["embedding"] == "frozen"
    assert labels["text"]["fc1"]["kernel"] == labels["video"]["w"] == "trainable"
    optimizer = optax.multi_transform(
        {"trainable": optax.adamw(0.1, weight_decay=0.5), "frozen": optax.set_to_zero()}, labels
    )
    state = optimizer.init(tree)
    grads = jax.tree.map(jnp.ones_like, tree)
    updates, _ = optimizer.update(grads, state, tree)
    new = optax.apply_updates(tree, updates)
    np.testing.assert_array_equal(
        new["text"]["word_embd"]["embedding"], tree["text"]["word_embd"]["embedding"]
    )
    assert not np.allclose(new["text"]["fc1"]["kernel"], tree["text"]["fc1"]["kernel"])


def test_with_word_embeddings(ids):
    model = small_encoder()
    params = model.init(jax.random.key(0), ids)["params"]
    table = np.random.default_rng(1).normal(size=(VOCAB, 6)).astype(np.float32)
    loaded = with_word_embeddings(params, table)
    np.testing.assert_array_equal(loaded["word_embd"]["embedding"], table)
    np.testing.assert_array_equal(loaded["fc1"]["kernel"], params["fc1"]["kernel"])
    with pytest.raises(ValueError, match="does not match"):
        with_word_embeddings(params, table[:-1])


def test_paper_sizes():
    model = TextEncoder(vocab_size=100)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 16), jnp.int32))
    params = shapes["params"]
    assert params["word_embd"]["embedding"].shape == (100, 300)
    assert params["fc1"]["kernel"].shape == (300, 2048)
    assert params["fc2"]["kernel"].shape == (2048, 512)
