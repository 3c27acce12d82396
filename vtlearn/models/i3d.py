"""I3D video backbone (Carreira & Zisserman 2017), MIL-NCE's ablation model.

The same Inception-v1 trunk as S3D-G (`layers.inception_v1_trunk`) with full
k×k×k units, a 7×7×7 stride-2 stem and no gating. Input clips [B, T, H, W, 3]
in [0, 1]; a 32×224×224 clip gives a 4×7×7×1024 `mixed_5c_map`.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from vtlearn.models import layers


class I3D(layers.InceptionBackbone):
    """Inflated Inception-v1 with MIL-NCE's joint-space head.

    Attributes: those of `layers.InceptionBackbone`.
    """

    @nn.compact
    def __call__(self, video: jax.Array, train: bool) -> dict[str, jax.Array]:
        """Embeds clips.

        Args:
            video: [B, T, H, W, 3] in [0, 1].
            train: BN uses batch statistics and updates `batch_stats` when True.

        Returns:
            `mixed_5c_map` [B, T/8, H/32, W/32, 1024] (sizes rounded up),
            `mixed_5c` [B, 1024] and `video_embedding` [B, embedding_dim].
        """
        layers.check_video(video)
        unit = self.unit_factory(separable=False)
        x = unit(64, (7, 7, 7), (2, 2, 2), name="conv1")(video, train)
        x = layers.inception_v1_trunk(x, unit=unit, gating=False,
                                      pool_padding=self.pool_padding, train=train)
        return layers.video_endpoints(x, self.embedding_dim)
