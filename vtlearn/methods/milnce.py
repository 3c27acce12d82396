"""MIL-NCE (Miech et al., CVPR 2020): S3D-G/I3D + word-embedding text model.

Video clips [B, T, H, W, 3] go through the backbone to `video_embedding`
[B, 512]; each clip's K candidate narrations [B, K, L] through the text
model to [B, K, 512]; the Table 2 loss family (`vtlearn.losses.milnce`)
scores them against the other samples of the global batch (or of each
device's shard with `config.loss.negative_scope="device"`).

Attn+NCE (Appendix A, eqs. 7-9) adds attention heads that share every layer
with f and g but the last Linear: `attn_video` maps `mixed_5c` to 512,
`attn_text` maps the text model's pooled words to 512, and the attention
logits are their dot products.

The paper scores pairs by raw dot products. `config.loss.temperature > 0`
instead scores cosine similarity / temperature (embeddings L2-normalised,
in training and in evaluation), a common stabiliser for small batches and
short runs that is not part of MIL-NCE; 0 (default) is the paper's.

`config.loss.denominator_positives=2` counts each positive pair twice in the
softmax denominator, as the authors' release does (`vtlearn.losses.milnce.
mil_nce`); 1 (default) is eq. 1.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vtlearn import sharding
from vtlearn.alignment import l2_normalize
from vtlearn.losses import milnce as losses
from vtlearn.methods.video_text import VideoTextMethod


class MilNce(VideoTextMethod):
    """The MIL-NCE method; see the module docstring."""

    def __init__(self, config, num_devices):
        super().__init__(config, num_devices)
        if config.loss.temperature < 0:
            raise ValueError(f"config.loss.temperature must be >= 0 (0: the paper's dot "
                             f"products), got {config.loss.temperature}")
        self.attention = config.loss.kind == "attn_nce"
        self.attn_video = nn.Dense(config.model.embedding_dim)
        self.attn_text = nn.Dense(config.model.embedding_dim)

    def init(self, rng, batch):
        rng, ra, rb = jax.random.split(rng, 3)
        params, state = super().init(rng, batch)
        if self.attention:
            params["attn_video"] = self.attn_video.init(ra, jnp.zeros([1, 1024]))["params"]
            params["attn_text"] = self.attn_text.init(
                rb, jnp.zeros([1, self.config.model.text.hidden_dim]))["params"]
        return params, state

    def loss(self, params, state, batch, rng, step):
        lc = self.config.loss
        out, state = self.apply_video(params, state, batch, train=True)
        tokens, mask = batch["text"], batch["text_mask"]
        if lc.kind == "cat_nce":
            tokens = losses.concat_candidate_tokens(tokens, mask)
            mask = mask[:, :1]
        inputs = dict(video=self._joint(out["video_embedding"]), text_mask=mask)
        if self.attention:
            text, pooled = self.apply_text(params, tokens, return_pooled=True)
            av = self.attn_video.apply({"params": params["attn_video"]}, out["mixed_5c"])
            at = self.attn_text.apply({"params": params["attn_text"]}, pooled)
            inputs["attention_logits"] = jnp.einsum("bd,bkd->bk", av, at)
        else:
            text = self.apply_text(params, tokens)
        inputs["text"] = self._joint(text)
        if self.config.loss.temperature:
            inputs["video"] = inputs["video"] / self.config.loss.temperature
        kwargs = dict(kind=lc.kind, negatives=lc.negatives, margin=lc.margin,
                      denominator_positives=lc.denominator_positives)
        if lc.num_negatives:
            kwargs.update(num_negatives=lc.num_negatives, rng=rng)
        if lc.negative_scope == "device":
            grouped = {k: sharding.group_leading(v, self.num_devices) for k, v in inputs.items()}
            value = jax.vmap(lambda g: losses.milnce_family_loss(**g, **kwargs)[0])(grouped)
            value = value.mean()
        elif lc.negative_scope == "global":
            value, _ = losses.milnce_family_loss(**inputs, **kwargs)
        else:
            raise ValueError(f"config.loss.negative_scope must be 'global' or 'device', "
                             f"got {lc.negative_scope!r}")
        return value, (state, {})

    def _joint(self, embedding):
        """The embedding as scored: L2-normalised when a temperature is set."""
        return l2_normalize(embedding) if self.config.loss.temperature else embedding

    def embed_video(self, params, state, clips):
        out = super().embed_video(params, state, clips)
        return dict(out, embedding=self._joint(out["embedding"]))

    def embed_text(self, params, state, text):
        return self._joint(super().embed_text(params, state, text))


def release_config(weights_path: str, dict_path: str,
                   pool_padding: str = "pytorch_port") -> ml_collections.ConfigDict:
    """A MIL-NCE config describing the public S3D release's architecture.

    S3D-G with space-to-depth stem and gating, BN epsilon 1e-5, 512-d joint
    space, 300-d words through a 2048-d hidden layer, the padding id inside
    the text max-pool, raw dot-product scores; 32 frames at 10 fps, 224x224
    crops and 16 words, as in the release's examples.
    """
    from vtlearn import config_defaults

    config = config_defaults.base_config("milnce_release", "milnce")
    config.model = ml_collections.ConfigDict(dict(
        embedding_dim=512,
        video=dict(name="s3d", stem="space_to_depth", gating=True, bn_epsilon=1e-5,
                   bn_momentum=0.9, bn_per_device=False, pool_padding=pool_padding,
                   conv_lowering="factorized"),
        text=dict(word_dim=300, hidden_dim=2048, pad_in_max=True,
                  freeze_word_embeddings=True, word2vec_path="")))
    config.loss = ml_collections.ConfigDict(dict(
        kind="milnce", negatives="xy", num_negatives=0, margin=0.1, negative_scope="global",
        temperature=0.0, denominator_positives=2))
    config.data.update(vocab_path=str(dict_path), num_frames=32, fps=10.0, crop_size=224,
                       eval_crop_size=224, max_words=16)
    config.model_init = str(weights_path)
    return config


def load_milnce_release(weights_path: str, dict_path: str,
                        pool_padding: str = "pytorch_port"):
    """The public MIL-NCE S3D weights (`s3d_howto100m.pth`, `s3d_dict.npy`) as a
    `vtlearn.api.Model`, also as `vtlearn.load_milnce_release`.

    `embed_video` takes clips in [0, 1] (or uint8) as the release does;
    `embed_text` tokenises as the release does. Needs torch
    (`pip install 'vtlearn[milnce_release]'`).
    """
    from vtlearn import api
    from vtlearn.data.text import Vocabulary

    config = release_config(str(weights_path), str(dict_path), pool_padding)
    mesh = sharding.make_mesh()
    method = MilNce(config, mesh.size)
    params, model_state = jax.device_put(method.external_weights(str(weights_path)),
                                         sharding.replicated(mesh))
    return api.Model(config, method, params, model_state, Vocabulary.load(dict_path), mesh, 0)
