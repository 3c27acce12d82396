r"""Hessel et al. (EMNLP 2020), "Beyond Instructional Videos": groundability.

Paper setup (`get_config()`): YouTube-600K (YouTube-8M videos with English
ASR; per-second features: Inception-v3 on frames at 1 fps and S3D-G on 1-s
clips, each L2-normalised, 2,524-d together), 5-s segments (256 random
candidates per video, those without ASR dropped), 300-d trainable word
embeddings max-pooled, gated embedding heads, cosine similarity, the
bidirectional hinge of eq. 1 with margin 0.1 and same- and other-video
negatives in equal proportion, Adam at 1e-3, 300k steps. Expected (paper,
§4 and Table 1): per-category intra-video AUC from 51 ("Mixtape") to 76
("Muffin"), e.g. "Eye liner" 74, "Vegetarian cuisine" 71, "Action figure"
64; video games and dashcams are the lows ("RuneScape" 54, "First-person
shooter" 55, "Dashcam" 54, "Call of Duty" 55); the mean over videos is above
the 50 of chance in most categories.

The paper leaves unstated: batch size, negatives per positive, joint
embedding size and the learning-rate schedule. Our choices: 256 videos x 8
segments per step (2,048 pairs; every pair of the batch is a negative,
weighted so same-video and other-video negatives count equally), a 512-d
joint space, a constant learning rate. Records carry the 2,524-d vector as
`FEATURES/2d/floats` (`python -m vtlearn.data.convert features ...`); set
`--config.data.features_2d/3d` to how your records split it.

  python -m vtlearn.main --config=configs/hessel.py --workdir=gs://.../hessel \
    --config.data.train_files='gs://.../yt600k/train-*.tfrecord' \
    --config.data.eval_files='gs://.../yt600k/val-*.tfrecord' \
    --config.data.vocab_path=vocab.txt

Local preset (`:local`) on the synthetic lab's features, whose categories
have known groundability (`lab.json`; the groundability evaluator's
`reference`, so it reports the Spearman rho between per-category AUC and
it); measured results in the README:

  python -m vtlearn.main --config=configs/hessel.py:local --workdir=/tmp/hessel

Evaluations: `evals.groundability` (intra-video, segment and per-category
AUC; tables and plots in the workdir's artefacts) and `evals.retrieval`.

§5 in miniature: train on the lab's instructional categories only
(`--config.data.train_categories='(0,2,4,6)'`, the even ids the lab flags)
and on all, then compare per-video wins on each kind of test video:

  python -m vtlearn.evaluation.groundability --a=/tmp/hessel_instructional --b=/tmp/hessel
`:tiny` is a smoke run for tests: 17 s from a cold start on 2 quiet CPU
cores.
"""

import ml_collections

from vtlearn import config_defaults
from vtlearn.evaluation.base import section


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """`arg`: "" (paper), "local" (synthetic lab, 2 CPU cores) or "tiny" (tests)."""
    config = config_defaults.base_config("hessel" + (f"_{arg}" if arg else ""), "hessel")
    config.model = ml_collections.ConfigDict(dict(
        embedding_dim=512,
        text=dict(word_dim=300, word2vec_path="", freeze_word_embeddings=False)))
    config.loss = ml_collections.ConfigDict(dict(margin=0.1, same_video_weight=0.5))
    config.data.update(sampler="segments", video=False, features_2d=2524, features_3d=0,
                       feature_pooling="l2_max", segment_seconds=5.0, candidate_segments=256,
                       num_pairs=8, max_words=32, eval_num_clips=1)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=0, schedule="constant")
    config.train.update(batch_size=256, num_steps=300_000)
    del config.evals["probe"]
    config.evals.groundability = section("groundability", every=10_000)
    if arg in ("local", "tiny"):
        _small(config, arg)
    elif arg:
        raise ValueError(f"unknown preset {arg!r}: use '', 'local' or 'tiny'")
    return config


def _small(config: ml_collections.ConfigDict, preset: str) -> None:
    """The same method on the synthetic lab's features, sized for 2 CPU cores."""
    from vtlearn.data import lab

    # Features only (no frames to render), and a test split of 20 videos per
    # category for the local preset: per-category AUC over the default 4
    # test videos of a category is too noisy to rank 8 categories.
    settings = lab.lab_config(preset)
    splits = settings.num_videos[:2] + (160 if preset == "local" else settings.num_videos[2],)
    config_defaults.use_lab(config, preset, frames=False, num_videos=splits)
    settings = lab.lab_config(preset, frames=False, num_videos=splits)
    config.data.update(video=False, features_2d=settings.features_2d,
                       features_3d=settings.features_3d)
    world = lab.build_world(settings)
    config.evals.groundability.reference = world.groundability
    config.evals.groundability.instructional = tuple(
        c for c, flag in enumerate(world.instructional) if flag)
    config.train.update(batch_size=16, num_steps=1000, log_every=50, checkpoint_every=500)
    config_defaults.evaluate_every(config, 500)
    config.eval_batch_size = 64
    if preset == "tiny":
        config.train.update(batch_size=8, num_steps=4, log_every=2, checkpoint_every=2)
        config_defaults.evaluate_every(config, 4)
        config.eval_batch_size = 16
