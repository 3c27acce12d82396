"""Gated embedding heads (Miech et al. 2018, "Learning a text-video embedding
from incomplete and heterogeneous data", §3.1), as Hessel et al. 2020 and MCN
use them.

Gated embedding unit, for input x:

    y1 = W1 x + b1
    y2 = y1 ∘ σ(W2 y1 + b2)         (context gating)
    y  = y2 / ‖y2‖                   (L2 normalisation; `normalize`)

MCN's release applies no L2 normalisation (`normalize=False`): its losses
take raw dot products.

`BagOfWordsEncoder` embeds token ids (trainable word vectors, optionally
initialised from word2vec), optionally projects each word (Linear + ReLU,
MCN's text branch), max-pools them over the caption's words and maps the
result through a gated unit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vtlearn.alignment import l2_normalize
from vtlearn.data.text import PAD_ID
from vtlearn.models.text import WORD_EMBEDDING_PATH


class GatedEmbeddingUnit(nn.Module):
    """[..., D_in] -> [..., dim], L2-normalised if `normalize`."""

    dim: int
    normalize: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y1 = nn.Dense(self.dim, name="fc")(x)
        y2 = y1 * jax.nn.sigmoid(nn.Dense(self.dim, name="gate")(y1))
        # l2_normalize: zero for zero input (padding), with a finite gradient
        return l2_normalize(y2) if self.normalize else y2


class BagOfWordsEncoder(nn.Module):
    """Token ids [..., L] -> [..., dim]: words, (projection,) max-pool, gated unit.

    Padding (id 0) takes no part in the max-pool; a caption with no word
    pools to zeros. `frozen_param_paths` is empty (word vectors are trained,
    as in Hessel et al.), unless `freeze_word_embeddings` (MCN: fixed
    word2vec).

    Attributes:
      project_words: width of a Linear + ReLU applied to each word before the
        max-pool (MCN: the joint dimension); 0 = none.
      normalize: L2-normalise the output (the gated unit's `normalize`).
    """

    vocab_size: int
    dim: int
    word_dim: int = 300
    freeze_word_embeddings: bool = False
    project_words: int = 0
    normalize: bool = True

    @nn.compact
    def __call__(self, ids: jax.Array, return_pooled: bool = False):
        """Returns [..., dim], or ([..., dim], the pooled words [..., W])."""
        words = nn.Embed(self.vocab_size, self.word_dim, name=WORD_EMBEDDING_PATH[0])(ids)
        if self.project_words:
            words = nn.relu(nn.Dense(self.project_words, name="word_projection")(words))
        valid = (ids != PAD_ID)[..., None]
        pooled = jnp.where(jnp.any(valid, axis=-2),
                           jnp.max(jnp.where(valid, words, -jnp.inf), axis=-2), 0.0)
        out = GatedEmbeddingUnit(self.dim, self.normalize, name="head")(pooled)
        return (out, pooled) if return_pooled else out

    def frozen_param_paths(self) -> tuple[tuple[str, ...], ...]:
        return (WORD_EMBEDDING_PATH,) if self.freeze_word_embeddings else ()
