"""MIL-NCE's sentence encoder (Table 1, right).

word ids → 300-d word embeddings → Linear 2048 + ReLU → max over words →
Linear 512. Ids follow `vtlearn.data.text.Vocabulary`: 0 is padding, word
`vocab.words[i]` is id `i + 1`; the paper uses up to 16 words.

Frozen word embeddings. The paper keeps the GoogleNews word2vec table fixed.
With `freeze_word_embeddings=True` the lookup is wrapped in `stop_gradient`
(its gradient is exactly zero and never materialised), and the trainer must
also keep the optimizer from touching it (weight decay would still move it):
the table lives at `params["word_embd"]["embedding"]` of this module
(`WORD_EMBEDDING_PATH`); `TextEncoder.frozen_param_paths()` lists the paths to
freeze and `param_labels(params, paths, prefix)` turns them into labels for
`optax.multi_transform` with `optax.set_to_zero()` on "frozen". Load the table into
freshly initialised params with `with_word_embeddings`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vtlearn.data.text import PAD_ID

WORD_EMBEDDING_PATH: tuple[str, str] = ("word_embd", "embedding")


class TextEncoder(nn.Module):
    """Bag-of-words sentence encoder with max-pooling over words.

    Attributes:
        vocab_size: embedding rows including padding row 0 (`len(vocab)`).
        word_dim: word vector width (300 for GoogleNews word2vec).
        hidden_dim: width of the per-word Linear + ReLU.
        embedding_dim: joint-space width.
        pad_in_max: let padding positions take part in the max-pool, as the
            public release does (its padding row is an ordinary embedding).
            Off by default: padding is masked out of the max.
        freeze_word_embeddings: stop gradients into the word table; set it
            when the table is loaded from word2vec (as in the paper), leave it
            off to learn the table from scratch. See the module docstring for
            the optimizer side.
    """

    vocab_size: int
    word_dim: int = 300
    hidden_dim: int = 2048
    embedding_dim: int = 512
    pad_in_max: bool = False
    freeze_word_embeddings: bool = False

    def frozen_param_paths(self) -> tuple[tuple[str, ...], ...]:
        """Param paths (within this module) the optimizer must leave alone."""
        return (WORD_EMBEDDING_PATH,) if self.freeze_word_embeddings else ()

    @nn.compact
    def __call__(self, ids: jax.Array, return_pooled: bool = False):
        """Embeds sentences.

        Args:
            ids: int [..., L] word ids, 0 = padding; any leading dims, e.g.
                [B, K, L] for K candidate narrations per clip.
            return_pooled: also return the max-pooled hidden words
                [..., hidden_dim], the input of the last Linear (what
                Attn+NCE's attention head shares with the text model).

        Returns:
            [..., embedding_dim], or (that, pooled) with `return_pooled`. With
            padding masked (the default), a sentence with no word pools to
            zeros, so its embedding is `fc2`'s bias.
        """
        words = nn.Embed(self.vocab_size, self.word_dim, name="word_embd")(ids)
        if self.freeze_word_embeddings:
            words = jax.lax.stop_gradient(words)
        hidden = nn.relu(nn.Dense(self.hidden_dim, name="fc1")(words))
        if self.pad_in_max:
            pooled = hidden.max(axis=-2)
        else:
            is_word = (ids != PAD_ID)[..., None]
            pooled = jnp.where(is_word, hidden, -jnp.inf).max(axis=-2)
            pooled = jnp.where(is_word.any(axis=-2), pooled, 0.0)
        embedding = nn.Dense(self.embedding_dim, name="fc2")(pooled)
        return (embedding, pooled) if return_pooled else embedding


def with_word_embeddings(params: dict, table: np.ndarray) -> dict:
    """Returns `params` of a `TextEncoder` with the word table replaced.

    Args:
        params: the encoder's params (the `"params"` collection).
        table: [vocab_size, word_dim], e.g. from `word2vec.load_word2vec`.
    """
    current = params[WORD_EMBEDDING_PATH[0]][WORD_EMBEDDING_PATH[1]]
    if current.shape != table.shape:
        raise ValueError(f"word table {table.shape} does not match params {current.shape}")
    layer_name, param_name = WORD_EMBEDDING_PATH
    layer = {**params[layer_name], param_name: jnp.asarray(table, current.dtype)}
    return {**params, layer_name: layer}


def param_labels(params, frozen_paths: Sequence[Sequence[str]], prefix: Sequence[str] = ()):
    """Labels "frozen" at (and under) the frozen paths, "trainable" elsewhere.

    Args:
        params: a params pytree of nested dicts.
        frozen_paths: e.g. `TextEncoder.frozen_param_paths()`.
        prefix: where the encoder sits in `params`, e.g. `("text",)` when the
            trainer nests it under a "text" key.

    Returns:
        A pytree of strings like `params`, for
        `optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)`.
        (Not `optax.masked`, which passes masked-out gradients through.)
    """
    frozen = [tuple(prefix) + tuple(p) for p in frozen_paths]

    def label(path, _):
        keys = tuple(getattr(k, "key", k) for k in path)
        return "frozen" if any(keys[:len(f)] == f for f in frozen) else "trainable"

    return jax.tree_util.tree_map_with_path(label, params)


def trainable_mask(params, frozen_paths: Sequence[Sequence[str]],
                   prefix: Sequence[str] = ("text",)):
    """Pytree of bools like `params`: False at (and under) the frozen paths."""
    return jax.tree.map(lambda label: label == "trainable",
                        param_labels(params, frozen_paths, prefix))
