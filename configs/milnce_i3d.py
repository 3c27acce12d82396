r"""MIL-NCE with I3D from raw pixels (Miech et al., CVPR 2020).

Same setup as configs/milnce_s3d.py with the I3D backbone (full 3x3x3
convolutions, 7x7x7 stride-2 stem, no gating); the paper's ablations (Table 2,
4 TPUs) used it. Its numbers on the benchmarks (Tables 3-5; evaluators as in
milnce_s3d): youcook2 t2v R@1/5/10 11.4 / 30.6 / 42.0, MedR 16; msrvtt 9.4 /
22.2 / 30.0, MedR 35; crosstask CTR 36.4; action_recognition frozen HMDB51
54.8, UCF101 83.4; coin frame accuracy 59.4; youtube8m_segments mAP 77.1.

  python -m vtlearn.main --config=configs/milnce_i3d.py --workdir=... (data flags as S3D)
  python -m vtlearn.main --config=configs/milnce_i3d.py:local --workdir=/tmp/milnce_i3d
"""

import pathlib

import ml_collections

from vtlearn.config_defaults import load_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """`arg`: "" (paper), "local" or "tiny", as in milnce_s3d."""
    s3d = pathlib.Path(__file__).with_name("milnce_s3d.py")
    config = load_config(f"{s3d}:{arg}" if arg else str(s3d))
    config.name = config.name.replace("s3d", "i3d")
    config.model.video.name = "i3d"
    return config
