"""Pure Flax models: S3D-G and I3D video backbones, a feature tower, MIL-NCE's text encoder.

- `s3d.S3DG`, `i3d.I3D`: `module.apply(variables, video [B, T, H, W, 3],
  train=...)` → dict with `mixed_5c_map`, `mixed_5c` [B, 1024] and
  `video_embedding` [B, 512].
- `features.FeatureTower`: `mixed_5c` and `video_embedding` from pre-extracted clip
  features [B, D] instead of pixels.
- `text.TextEncoder`: `module.apply(variables, ids [..., L])` → [..., 512].
- `word2vec.load_word2vec`: GoogleNews vectors aligned to a `Vocabulary`.
- `milnce_release.load_release`: the public MIL-NCE S3D weights.
"""

from vtlearn.models.features import FeatureTower
from vtlearn.models.i3d import I3D
from vtlearn.models.s3d import S3DG
from vtlearn.models.text import TextEncoder

__all__ = ["FeatureTower", "I3D", "S3DG", "TextEncoder"]
