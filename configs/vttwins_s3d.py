r"""VT-TWINS with S3D-G from raw pixels (Ko et al., CVPR 2022).

Paper setup (`get_config()`): HowTo100M, S3D-G, 8 consecutive clip-caption
pairs per video, each clip 32 frames at 10 fps with 224x224 crops; S2DTW with
gamma 0.1 (smoothing and recursion), dummy distance phi 0.5, negative dot
product of L2-normalised embeddings; temporal shuffling strategy A with
window 2 and tau 0.02; InfoNCE over -S2DTW in both directions; Adam 1e-3 with
a cosine schedule. The paper does not state batch size or steps; we use 64
videos (512 clips) per step and MIL-NCE's 400k steps. Expected (paper): YouCook2 zero-shot
R@10 38.8 (MedR 19), MSR-VTT R@10 31.6, CrossTask CTR 40.7, HMDB/UCF linear
probe (Table 6 row 6, short schedule) 42.0/72.1.

  python -m vtlearn.main --config=configs/vttwins_s3d.py --workdir=gs://.../vttwins \
    --config.data.train_files='gs://.../howto100m/train-*.tfrecord' \
    --config.data.eval_files='gs://.../youcook2/val-*.tfrecord' \
    --config.data.probe_files='gs://.../youcook2/train-*.tfrecord' \
    --config.data.vocab_path=vocab.txt \
    --config.model.text.word2vec_path=GoogleNews-vectors-negative300.bin

Local preset (`:local`) on the synthetic lab, 2 CPU cores:

  python -m vtlearn.main --config=configs/vttwins_s3d.py:local --workdir=/tmp/vttwins

Evaluations: retrieval and linear probe as for MIL-NCE, and `evals.alignment`,
which writes the alignment view (Fig. 5) of one test video to
`artefacts/alignment/step_<N>_alignment.png` in the workdir.

The paper's numbers on the benchmarks (Tables 1-5), each measured on the
benchmark's own files by the evaluator named (see configs/milnce_s3d.py):
  youcook2            t2v R@1/5/10 9.7 / 27.0 / 38.8, MedR 19; v2t 9.7 / 28.0 / 40.3, MedR 16
  msrvtt              t2v 9.4 / 23.4 / 31.6, MedR 32; v2t 9.1 / 22.9 / 29.1, MedR 43
  crosstask           CTR 40.7
  action_recognition  frozen linear (3 splits): HMDB51 57.9, UCF101 85.0

Table 6 switches (overrides):
  TA  --config.loss.shuffle=off|A|B|C
  WA  --config.loss.weak_alignment=True|False
  LS  --config.loss.local_smoothing=True|False
The release's quirks: --config.loss.direction=text_to_video (its one-direction
loss), --config.loss.smoothing_origin=release (its (0,0) smoothing boundary).
"""

import pathlib

import ml_collections

from vtlearn import config_defaults
from vtlearn.config_defaults import load_config
from vtlearn.evaluation.base import section


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """`arg`: "" (paper), "local" (synthetic lab, 2 CPU cores) or "tiny" (tests)."""
    milnce = pathlib.Path(__file__).with_name("milnce_s3d.py")
    config = load_config(f"{milnce}:{arg}" if arg else str(milnce))  # same towers
    config.name = "vttwins_s3d" + (f"_{arg}" if arg else "")
    config.method = "vttwins"
    config.loss = ml_collections.ConfigDict(dict(
        direction="both", gamma=0.1, smoothing_gamma=0.0, phi=0.5, distance="neg_dot",
        local_smoothing=True, weak_alignment=True, smoothing_origin="paper",
        shuffle="A", shuffle_window=2, shuffle_temperature=0.02))
    config.data.update(sampler="sequence", num_pairs=8, crop_size=224, eval_crop_size=224)
    config.optimizer.update(schedule="cosine")
    config.train.batch_size = 64
    # Fig. 5's matrices of one test video at every evaluation, with the loss's settings.
    config.evals.alignment = section("alignment_view", every=config.evals.retrieval.every)
    for key in ("gamma", "phi", "distance", "smoothing_origin", "smoothing_gamma"):
        config.evals.alignment[key] = config.loss.get_ref(key)
    if arg == "local":
        # The 32-step local lab (not MIL-NCE's "many_steps"): the README's
        # VT-TWINS tables were measured on it.
        config_defaults.use_lab(config, "local")
        config.evals.probe.every = config.evals.retrieval.every
        config.data.update(num_pairs=4, crop_size=32, eval_crop_size=32)
        config.train.batch_size = 8
    elif arg == "tiny":
        config.data.update(num_pairs=2, crop_size=32, eval_crop_size=32)
        config.train.batch_size = 8
    return config
