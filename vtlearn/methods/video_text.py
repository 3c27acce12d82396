"""Shared base of MIL-NCE and VT-TWINS: a video tower + word-embedding text.

MIL-NCE and VT-TWINS train the same two towers (`config.model`) and differ
only in their loss; this class owns building, initialising and applying the
towers, BatchNorm state, evaluation embeddings and frozen word vectors. The
video tower reads pixels (`model.video.name` "s3d" or "i3d") or pre-extracted
clip features ("features", `vtlearn.models.features`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vtlearn.data.text import Vocabulary
from vtlearn.methods.base import Method
from vtlearn.models import text as text_models
from vtlearn.models import word2vec
from vtlearn.models.features import FeatureTower
from vtlearn.models.i3d import I3D
from vtlearn.models.s3d import S3DG


FEATURE_KEYS = ("features_2d", "features_3d")


def build_video_model(cfg: ml_collections.ConfigDict, embedding_dim: int,
                      bn_group_size: int | None) -> nn.Module:
    """S3D-G, I3D or the feature tower from `config.model.video`."""
    common = dict(embedding_dim=embedding_dim, bn_epsilon=cfg.bn_epsilon,
                  bn_momentum=cfg.bn_momentum, bn_group_size=bn_group_size)
    if cfg.name == "features":
        return FeatureTower(**common)
    common.update(pool_padding=cfg.pool_padding, conv_lowering=cfg.conv_lowering)
    if cfg.name == "s3d":
        return S3DG(stem=cfg.stem, gating=cfg.gating, **common)
    if cfg.name == "i3d":
        return I3D(**common)
    raise ValueError("config.model.video.name must be 's3d', 'i3d' or 'features', "
                     f"got {cfg.name!r}")


def build_text_model(config: ml_collections.ConfigDict) -> text_models.TextEncoder:
    """The text model sized to the run's vocabulary (`config.data.vocab_path`)."""
    tc = config.model.text
    if tc.freeze_word_embeddings and not (tc.word2vec_path or config.get("model_init")):
        raise ValueError("config.model.text.freeze_word_embeddings=True needs "
                         "config.model.text.word2vec_path (e.g. GoogleNews word2vec) or "
                         "pretrained weights (config.model_init); set "
                         "freeze_word_embeddings=False to learn them instead.")
    return text_models.TextEncoder(
        vocab_size=len(Vocabulary.load(config.data.vocab_path)), word_dim=tc.word_dim,
        hidden_dim=tc.hidden_dim, embedding_dim=config.model.embedding_dim,
        pad_in_max=tc.pad_in_max, freeze_word_embeddings=tc.freeze_word_embeddings)


def to_unit_range(video: jax.Array) -> jax.Array:
    """uint8 pixels from the pipeline -> float32 in [0, 1] (floats pass through)."""
    if video.dtype == jnp.uint8:
        return video.astype(jnp.float32) / 255.0
    return video


class VideoTextMethod(Method):
    """Video and text towers; subclasses define `loss`.

    Params: {"video": ..., "text": ...}; model state: {"video": batch_stats}.
    """

    def __init__(self, config: ml_collections.ConfigDict, num_devices: int):
        super().__init__(config, num_devices)
        mc = config.model
        self.uses_features = mc.video.name == "features"
        self._clip_rank = 1 if self.uses_features else 4  # per-clip input axes
        if self.uses_features and not any(config.data[k] for k in FEATURE_KEYS):
            raise ValueError("config.model.video.name='features' needs "
                             "config.data.features_2d and/or config.data.features_3d > 0")
        per_device = config.train.batch_size // num_devices
        self.video_model = build_video_model(
            mc.video, mc.embedding_dim, per_device if mc.video.bn_per_device else None)
        self.text_model = build_text_model(config)

    def video_inputs(self, batch) -> jax.Array:
        """The tower's input: clips [..., T, H, W, 3] in [0, 1] or features [..., D]."""
        if self.uses_features:
            return jnp.concatenate([batch[k] for k in FEATURE_KEYS if k in batch], axis=-1)
        return to_unit_range(batch["video"])

    def init(self, rng, batch):
        rv, rt = jax.random.split(rng)
        # One clip and one sentence suffice (params do not depend on batch
        # shapes), and keep init identical across methods for compile caching.
        inputs = self.video_inputs(batch)
        clip = inputs.reshape((-1,) + inputs.shape[-self._clip_rank:])[:1]
        sentence = batch["text"].reshape((-1,) + batch["text"].shape[-1:])[:1]
        variables = self.video_model.init(rv, clip, train=False)
        params = {"video": variables["params"],
                  "text": self.text_model.init(rt, sentence)["params"]}
        return params, {"video": variables["batch_stats"]}

    def external_weights(self, path):
        """The MIL-NCE release's `.pth` (its word list must be `data.vocab_path`)."""
        if not (str(path).endswith(".pth") and str(self.config.data.vocab_path).endswith(".npy")):
            raise ValueError(f"config.model_init={path!r}: the video-text towers read a vtlearn "
                             "run directory or the MIL-NCE release's .pth, with "
                             "config.data.vocab_path set to its s3d_dict.npy (its word ids)")
        from vtlearn.models import milnce_release

        _, variables = milnce_release.load_release(path, self.config.data.vocab_path,
                                                   self.config.model.video.pool_padding)
        return ({"video": variables["video"]["params"], "text": variables["text"]["params"]},
                {"video": variables["video"]["batch_stats"]})

    def with_pretrained(self, params):
        """Word vectors from `config.model.text.word2vec_path`, if set."""
        return word2vec.with_configured_vectors(params, self.config)

    def apply_video(self, params, state, batch, train: bool):
        """Tower endpoints of a batch's clips; returns (outputs, new state).

        `batch` holds "video" [..., T, H, W, 3] (uint8 or [0, 1] floats) or the
        `features_*` [..., D]; any leading axes ([N] or [B, n]) are kept.
        """
        inputs = self.video_inputs(batch)
        lead = inputs.shape[:-self._clip_rank]
        inputs = inputs.reshape((-1,) + inputs.shape[len(lead):])
        variables = {"params": params["video"], "batch_stats": state["video"]}
        if train:
            out, updates = self.video_model.apply(variables, inputs, train=True,
                                                  mutable=["batch_stats"])
            state = {**state, "video": updates["batch_stats"]}
        else:
            out = self.video_model.apply(variables, inputs, train=False)
        return {k: v.reshape(lead + v.shape[1:]) for k, v in out.items()}, state

    def apply_text(self, params, tokens, **kwargs):
        """Text embeddings of token ids [..., L] -> [..., D]."""
        return self.text_model.apply({"params": params["text"]}, tokens, **kwargs)

    def embed_video(self, params, state, clips):
        out, _ = self.apply_video(params, state, clips, train=False)
        return {"embedding": out["video_embedding"], "features": out["mixed_5c"]}

    def embed_text(self, params, state, text):
        return self.apply_text(params, text)

    def trainable(self, params):
        return text_models.trainable_mask(params, self.text_model.frozen_param_paths())
