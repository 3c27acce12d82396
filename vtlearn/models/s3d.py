"""S3D-G video backbone (Xie et al. 2018) as used by MIL-NCE (Table 1, left).

Inception-v1 layout (`layers.inception_v1_trunk`) whose 3×3×3 units are
separable (1×3×3 conv+BN+ReLU then 3×1×1 conv+BN+ReLU), with self-gating after
`conv_2c` and on every Inception branch output.

Input: clips [B, T, H, W, 3], float in [0, 1] (no mean/std normalisation, as
in the MIL-NCE release). Output sizes follow TensorFlow "SAME" pooling, as in
the release: a 32×200×200 clip gives a `mixed_5c_map` of 4×7×7×1024 and so
does 32×224×224. (Table 1 of the paper lists 4×6×6 for 200×200, which "SAME"
pooling does not produce: 200 → 100 → 50 → 25 → 13 → 7.)

With the default settings (space-to-depth stem, gating, 512-d head) the model
has 9,670,800 parameters: 9,146,000 in the backbone, of which 1,225,008 are
gating, plus the 524,800 of `fc`; and 2 × 10,544 batch-norm running
statistics. (S3D without gating and head has 7,920,992.)
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax

from vtlearn.models import layers

Stem = Literal["space_to_depth", "conv_3x7x7", "separable_7x7x7"]


def space_to_depth(video: jax.Array) -> jax.Array:
    """Folds each 2×2×2 cube of pixels into channels, as the MIL-NCE release.

    Args:
        video: [B, T, H, W, C] with T, H, W even.

    Returns:
        [B, T/2, H/2, W/2, 8C]; input pixel (2t+dt, 2h+dh, 2w+dw, c) lands in
        channel ((dt·2 + dh)·2 + dw)·C + c.
    """
    b, t, h, w, c = video.shape
    if t % 2 or h % 2 or w % 2:
        raise ValueError(f"space_to_depth needs even T, H, W; got {video.shape}")
    x = video.reshape(b, t // 2, 2, h // 2, 2, w // 2, 2, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, t // 2, h // 2, w // 2, 8 * c)


class S3DG(layers.InceptionBackbone):
    """S3D-G with MIL-NCE's joint-space head.

    Attributes:
        stem: "space_to_depth" (public release: 2×2×2 space-to-depth to 24
            channels, then a 2×4×4 stride-1 conv, i.e. a 4×8×8 stride-2 conv
            with a constrained kernel), "conv_3x7x7" (a 3×7×7 stride-2 conv),
            or "separable_7x7x7" (TF-slim: 1×7×7 stride (1,2,2) then 7×1×1
            stride (2,1,1)). All give 64 channels at half resolution.
        gating: self-gating (the "G" of S3D-G).
        Plus the shared fields of `layers.InceptionBackbone`.
    """

    stem: Stem = "space_to_depth"
    gating: bool = True

    @nn.compact
    def __call__(self, video: jax.Array, train: bool) -> dict[str, jax.Array]:
        """Embeds clips.

        Args:
            video: [B, T, H, W, 3] in [0, 1].
            train: BN uses batch statistics and updates `batch_stats` (call
                `apply(..., mutable=["batch_stats"])`) when True.

        Returns:
            `mixed_5c_map` [B, T/8, H/32, W/32, 1024] (sizes rounded up),
            `mixed_5c` [B, 1024] (global average pool) and `video_embedding`
            [B, embedding_dim].
        """
        layers.check_video(video)
        plain, unit = self.unit_factory(separable=False), self.unit_factory(separable=True)
        if self.stem == "space_to_depth":
            x = plain(64, (2, 4, 4), name="conv1")(space_to_depth(video), train)
        elif self.stem == "conv_3x7x7":
            x = plain(64, (3, 7, 7), (2, 2, 2), name="conv1")(video, train)
        elif self.stem == "separable_7x7x7":
            x = unit(64, (7, 7, 7), (2, 2, 2), name="conv1")(video, train)
        else:
            raise ValueError(f"unknown stem {self.stem!r}")
        x = layers.inception_v1_trunk(x, unit=unit, gating=self.gating,
                                      pool_padding=self.pool_padding, train=train)
        return layers.video_endpoints(x, self.embedding_dim)
