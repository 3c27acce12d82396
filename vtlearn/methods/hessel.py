"""Hessel et al. (EMNLP 2020), "Beyond Instructional Videos": a gated joint embedding.

Each sample is m fixed-length segments of one video with the ASR spoken
during them (`data.sampler="segments"`): features_2d [B, m, D2],
features_3d [B, m, D3], text [B, m, L], text_mask [B, m]. The video head is
a gated embedding unit (`vtlearn.models.gated`) over the concatenated
(pooled, per-step L2-normalised) features; the text head embeds words
(300-d, trained; word2vec initialisation optional), max-pools them and
applies a gated unit. Both outputs are L2-normalised, so the similarity is
cosine. The loss is eq. 1's bidirectional hinge over all B·m pairs with
same- and other-video negatives in equal proportion
(`vtlearn.losses.hinge`).

Params: {"video": gated unit, "text": words + gated unit}; no model state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vtlearn.data.text import Vocabulary
from vtlearn.losses.hinge import mixed_negative_hinge_loss
from vtlearn.methods.base import Method
from vtlearn.models import text as text_models
from vtlearn.models import word2vec
from vtlearn.methods.video_text import FEATURE_KEYS
from vtlearn.models.gated import BagOfWordsEncoder, GatedEmbeddingUnit


class Hessel(Method):
    """See the module docstring."""

    def __init__(self, config, num_devices):
        super().__init__(config, num_devices)
        if config.data.video or not any(config.data[k] for k in FEATURE_KEYS):
            raise ValueError("method 'hessel' reads per-second features: set "
                             "config.data.video=False and config.data.features_2d/3d > 0")
        mc = config.model
        self.video_model = GatedEmbeddingUnit(mc.embedding_dim)
        self.text_model = BagOfWordsEncoder(
            vocab_size=len(Vocabulary.load(config.data.vocab_path)), dim=mc.embedding_dim,
            word_dim=mc.text.word_dim, freeze_word_embeddings=mc.text.freeze_word_embeddings)

    def _features(self, batch):
        return jnp.concatenate([batch[k] for k in FEATURE_KEYS if k in batch], axis=-1)

    def init(self, rng, batch):
        rv, rt = jax.random.split(rng)
        features = self._features(batch)
        features = features.reshape((-1, features.shape[-1]))[:1]
        text = batch["text"].reshape((-1, batch["text"].shape[-1]))[:1]
        return {"video": self.video_model.init(rv, features)["params"],
                "text": self.text_model.init(rt, text)["params"]}, {}

    def with_pretrained(self, params):
        """Word vectors from `config.model.text.word2vec_path`, if set."""
        return word2vec.with_configured_vectors(params, self.config)

    def loss(self, params, state, batch, rng, step):
        video = self.video_model.apply({"params": params["video"]}, self._features(batch))
        text = self.text_model.apply({"params": params["text"]}, batch["text"])
        b, m = batch["text_mask"].shape
        similarity = video.reshape(b * m, -1) @ text.reshape(b * m, -1).T
        value = mixed_negative_hinge_loss(
            similarity, jnp.repeat(jnp.arange(b), m), batch["text_mask"].reshape(-1),
            margin=self.config.loss.margin,
            same_video_weight=self.config.loss.same_video_weight)
        return value, (state, {})

    def embed_video(self, params, state, clips):
        return {"embedding": self.video_model.apply({"params": params["video"]},
                                                    self._features(clips))}

    def embed_text(self, params, state, text):
        return self.text_model.apply({"params": params["text"]}, text)

    def trainable(self, params):
        return text_models.trainable_mask(params, self.text_model.frozen_param_paths())
