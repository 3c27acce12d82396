"""Video tower over pre-extracted clip features instead of pixels.

For data whose records carry per-second features (`features_2d`, e.g. a 2-D
CNN on frames, and `features_3d`, e.g. a 3-D CNN on clips, as HowTo100M's
released features and MCN use), the pipeline gives each clip the mean of its
window's features (`data.features_2d/3d = D2/D3`, `data.video = False` to skip
decoding frames). This tower maps their concatenation [N, D2 + D3] through

    Linear(hidden) → BatchNorm → ReLU  = `mixed_5c`        [N, hidden]
    Linear(embedding_dim)              = `video_embedding` [N, embedding_dim]

`hidden` defaults to 1024, the width of the S3D-G/I3D `mixed_5c` endpoint, so
anything sized for the pixel backbones (the linear probe, Attn+NCE's heads)
fits unchanged. Selected with `config.model.video.name = "features"`; it
compiles in seconds, which also makes it the quick tower for trainer tests.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from vtlearn.models import layers


class FeatureTower(nn.Module):
    """features [N, D] → {"mixed_5c": [N, hidden], "video_embedding": [N, E]}."""

    embedding_dim: int = 512
    hidden_dim: int = 1024
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    bn_group_size: int | None = None

    @nn.compact
    def __call__(self, features: jax.Array, train: bool) -> dict[str, jax.Array]:
        x = nn.Dense(self.hidden_dim, use_bias=False, name="fc1")(features)
        x = layers.BatchNorm(self.bn_momentum, self.bn_epsilon, self.bn_group_size,
                             name="bn1")(x, train)
        hidden = nn.relu(x)
        return {"mixed_5c": hidden,
                "video_embedding": nn.Dense(self.embedding_dim, name="fc")(hidden)}
