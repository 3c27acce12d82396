r"""MIL-NCE with S3D-G from raw pixels (Miech et al., CVPR 2020).

Paper setup (`get_config()`): HowTo100M, 32 frames at 10 fps, 200x200 training
crops (224x224 at test), K=5 positive candidates, symmetric (x,y) negatives
over the global batch of 8192 (64 Cloud TPU v3 x 128), Adam 1e-3 with 5k
linear warm-up and two x0.1 decays, 400k steps, frozen GoogleNews word2vec.
About 3 days on 64 TPU v3. Records from `python -m vtlearn.data.convert videos ...`:

  python -m vtlearn.main --config=configs/milnce_s3d.py --workdir=gs://.../milnce \
    --config.data.train_files='gs://.../howto100m/train-*.tfrecord' \
    --config.data.eval_files='gs://.../youcook2/val-*.tfrecord' \
    --config.data.probe_files='gs://.../youcook2/train-*.tfrecord' \
    --config.data.vocab_path=vocab.txt \
    --config.model.text.word2vec_path=GoogleNews-vectors-negative300.bin

Fine-tuning the public release instead of training from scratch:
  --config.model_init=s3d_howto100m.pth --config.data.vocab_path=s3d_dict.npy \
  --config.model.video.pool_padding=pytorch_port --config.model.text.pad_in_max=True

Evaluations: `config.evals.retrieval` (zero-shot retrieval on eval_files) and
`config.evals.probe` (linear probe fit on probe_files), each with its own
`every`; `python -m vtlearn.evaluate --workdir=...` reruns them on a saved run.

The paper's numbers (S3D-G; Tables 3-5) and the evaluator that measures each on
the benchmark's own files (`vtlearn.evaluation.<type>`, `data_dir` = its folder):
  youcook2            t2v R@1/5/10 15.1 / 38.0 / 51.2, MedR 10
  msrvtt              t2v R@1/5/10 9.9 / 24.0 / 32.4, MedR 29.5
  crosstask           average recall (CTR) 40.5
  action_recognition  frozen linear, mean of 3 splits: HMDB51 53.1, UCF101 82.7
  coin                frame accuracy 61.0
  youtube8m_segments  (I3D only, Table 4b: mAP 77.1; features, not pixels here)
e.g. python -m vtlearn.evaluate --workdir=DIR --evals=youcook2,crosstask \
       --set evals.youcook2.data_dir=/data/youcook2 \
       --set evals.crosstask.data_dir=/data/crosstask_release
or, for the public weights, --published=milnce_release:s3d_howto100m.pth,s3d_dict.npy
instead of --workdir.

Local preset (`:local`): the same S3D-G (full widths) on the synthetic lab's
"many_steps" world (224 steps, so the test split holds 216 distinct step
names to retrieve), 8 frames at 5 fps, 32x32 crops, batch 32, trainable word
embeddings, 300 steps on 2 CPU cores in about 12 minutes (the linear probe,
224 step classes, runs once, at the end). One departure from the paper:
pairs are scored by cosine similarity / 0.1 (`loss.temperature=0.1`)
instead of raw dot products; with raw dot products this short run stays at
chance (the loss spikes once the learning rate is warm, then the towers
collapse). Measured retrieval R@10 on held-out clean step names: README.

  python -m vtlearn.main --config=configs/milnce_s3d.py:local --workdir=/tmp/milnce

`:tiny` is a smoke run for tests: about 2 minutes from a cold start on 2
quiet CPU cores (27 s compiling S3D-G's init, which LLVM level 1 has since
cut by 1.4x, 56 s the first step, the rest the evaluations' compiles); a rerun
with the compilation cache is faster.

Table 2 ablations are overrides:
  (a) loss:       --config.loss.kind=nce|binary|ranking   (with data.num_candidates=1)
  (b) negatives:  --config.loss.num_negatives=N
  (c) candidates: --config.data.num_candidates=1|3|5|9|17|33
  (d) MIL:        --config.loss.kind=max_nce|attn_nce|cat_nce
  (e) sides:      --config.loss.negatives='xy'|'y|x'|'x|y'
The release's loss (each positive twice in the softmax denominator, its
loss.py): --config.loss.denominator_positives=2.
Per-device negatives: --config.loss.negative_scope=device; per-device BN
statistics: --config.model.video.bn_per_device=True; the paper's raw dot
products in the local preset: --config.loss.temperature=0.
"""

import ml_collections

from vtlearn import config_defaults


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """`arg`: "" (paper), "local" (synthetic lab, 2 CPU cores) or "tiny" (tests)."""
    config = config_defaults.base_config("milnce_s3d" + (f"_{arg}" if arg else ""), "milnce")
    config.model = ml_collections.ConfigDict(dict(
        embedding_dim=512,
        video=dict(name="s3d", stem="space_to_depth", gating=True, bn_epsilon=1e-5,
                   bn_momentum=0.9, bn_per_device=False, pool_padding="tf_same",
                   conv_lowering="factorized"),
        text=dict(word_dim=300, hidden_dim=2048, pad_in_max=False,
                  freeze_word_embeddings=True, word2vec_path=""),
    ))
    config.loss = ml_collections.ConfigDict(dict(
        kind="milnce", negatives="xy", num_negatives=0, margin=0.1,
        negative_scope="global", temperature=0.0, denominator_positives=1))
    config.data.update(num_frames=32, fps=10.0, crop_size=200, eval_crop_size=224,
                       num_candidates=5, max_words=16, sampler="clip")
    if arg in ("local", "tiny"):
        _small(config, arg)
    elif arg:
        raise ValueError(f"unknown preset {arg!r}: use '', 'local' or 'tiny'")
    return config


def _small(config: ml_collections.ConfigDict, preset: str) -> None:
    """The same method sized for 2 CPU cores and the synthetic lab."""
    config_defaults.use_lab(config, "many_steps" if preset == "local" else preset)
    config.data.update(num_frames=8, fps=5.0, crop_size=32, eval_crop_size=32,
                       eval_num_clips=2)
    config.model.text.freeze_word_embeddings = False
    config.optimizer.update(warmup_steps=50, schedule="cosine")
    config.loss.temperature = 0.1
    config.train.update(batch_size=32, num_steps=300, log_every=20, checkpoint_every=100)
    config_defaults.evaluate_every(config, 150)
    config.evals.probe.every = 300  # fitting 224 classes takes minutes
    config.eval_batch_size = 32
    if preset == "tiny":
        config.data.update(crop_size=32, eval_crop_size=32, shuffle_buffer=16)
        config.optimizer.warmup_steps = 2
        config.train.update(batch_size=8, num_steps=4, log_every=2, checkpoint_every=2)
        config_defaults.evaluate_every(config, 4)
        config.eval_batch_size = 8
