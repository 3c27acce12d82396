"""Gated embedding heads (Miech et al. 2018, "Learning a text-video embedding
from incomplete and heterogeneous data", §3.1), as Hessel et al. 2020 and MCN
use them.

Gated embedding unit, for input x:

    y1 = W1 x + b1
    y2 = y1 ∘ σ(W2 y1 + b2)         (context gating)
    y  = y2 / ‖y2‖                   (L2 normalisation)

`BagOfWordsEncoder` embeds token ids (trainable word vectors, optionally
initialised from word2vec), max-pools them over the caption's words and maps
the result through a gated unit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vtlearn.alignment import l2_normalize
from vtlearn.data.text import PAD_ID
from vtlearn.models.text import WORD_EMBEDDING_PATH


class GatedEmbeddingUnit(nn.Module):
    """[..., D_in] -> L2-normalised [..., dim]."""

    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y1 = nn.Dense(self.dim, name="fc")(x)
        y2 = y1 * jax.nn.sigmoid(nn.Dense(self.dim, name="gate")(y1))
        return l2_normalize(y2)  # zero for zero input (padding), with a finite gradient


class BagOfWordsEncoder(nn.Module):
    """Token ids [..., L] -> L2-normalised [..., dim]: words, max-pool, gated unit.

    Padding (id 0) takes no part in the max-pool; a caption with no word
    pools to zeros. `frozen_param_paths` is empty (word vectors are trained,
    as in Hessel et al.), unless `freeze_word_embeddings`.
    """

    vocab_size: int
    dim: int
    word_dim: int = 300
    freeze_word_embeddings: bool = False

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        words = nn.Embed(self.vocab_size, self.word_dim, name=WORD_EMBEDDING_PATH[0])(ids)
        valid = (ids != PAD_ID)[..., None]
        pooled = jnp.where(jnp.any(valid, axis=-2),
                           jnp.max(jnp.where(valid, words, -jnp.inf), axis=-2), 0.0)
        return GatedEmbeddingUnit(self.dim, name="head")(pooled)

    def frozen_param_paths(self) -> tuple[tuple[str, ...], ...]:
        return (WORD_EMBEDDING_PATH,) if self.freeze_word_embeddings else ()
