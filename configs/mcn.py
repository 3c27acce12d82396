r"""MCN (Chen et al., ICCV 2021), "Multimodal Clustering Networks".

Paper setup (`get_config()`, §4.1 and appendix B.1): HowTo100M with
pre-extracted features (2-D ResNet-152 at 1/s and 3-D ResNeXt-101 at 1.5/s,
2,048-d each, max-pooled over the clip and L2-normalised each, 4,096-d
together), log-mel audio (40 bands, 10-ms hop, 1,000 frames = 10 s) through
ResDAVEnet, word2vec text (300-d, fixed, up to 20 words); per sample 32
captions drawn with replacement and merged with their neighbours to at least
10 s; batch 128 × 32 = 4,096 clips; D = 4,096; the MMS loss with δ = 0.001 on
raw dot products, online k-means with K = 256 over the batch and a queue of
20 earlier batches (half of each sample's clips), the centroid loss summed
over modalities (eq. 7), reconstruction (eq. 8); Adam 1e-4 with warm-up and
cosine decay, 30 epochs (HowTo100M's 1.2 M videos / 128 per step ≈ 281k
steps). Expected (paper, Tables 1-3): YouCook2 T→VA R@1/5/10 18.1/35.5/45.2,
MSR-VTT 10.5/25.2/33.8, CrossTask recall 35.1; CrossTask clustering NMI
65.5, ARI 48.5, Acc 57.6, ⟨H⟩ 0.34, ⟨p_max⟩ 83.8.

The release (brian7685/Multimodal-Clustering-Network) differs; each is an
option: D = 6,144 (`--config.model.embedding_dim=6144`); a trained, not
frozen, ResDAVEnet (no pretrained DAVEnet weights ship with either, so the
audio net is trained here by default; the paper's fixed pretrained DAVEnet is
`--config.model_init=davenet.pth --config.model.audio.trainable=False`, any
PyTorch ResDAVEnet state dict, `vtlearn.models.audio.from_torch`); cosine
k-means whose empty clusters become 0 (`loss.cluster_metric=cosine
loss.empty_clusters=zero`; the paper is silent on empty clusters, the default
moves the farthest point into them, as scikit-learn does); the centroid terms averaged
(`loss.centroid_terms=mean`, its `--mean=0`) or the fused embedding's only
(`fused`, the `--mean=1` its scripts pass); reconstruction of each tower's
input by an MLP, weighted 50 (`loss.reconstruction=release
loss.reconstruction_weight=50`); 5,000 warm-up steps.

  python -m vtlearn.main --config=configs/mcn.py --workdir=gs://.../mcn \
    --config.data.train_files='gs://.../howto100m/train-*.tfrecord' \
    --config.data.eval_files='gs://.../youcook2/val-*.tfrecord' \
    --config.data.vocab_path=vocab.txt \
    --config.model.text.word2vec_path=GoogleNews-vectors-negative300.bin

Table 5 / Table 6 rows: `--config.loss.contrastive=nce|milnce|mms`,
`--config.loss.cluster=none|kmeans|sinkhorn`, `--config.loss.target=
centroid|joint|swap`, `--config.loss.labels=hard|soft`,
`--config.loss.reconstruction=none|paper|release` (README: the lab table).

Local preset (`:local`): the lab's features and 8-kHz audio (whose tones
carry each action, `vtlearn.data.lab`), a ResDAVEnet of widths 16/32/32/64,
D = 256, K = 64, 16 × 8 clips per step, 600 steps; evaluations: retrieval
T→VA (the method's similarity), T→V and A→V, and clustering of the test
split's ground-truth step segments. About 4 minutes on 2 CPU cores (plus
about 3 to generate the lab the first time). On the lab, clustering does not
beat MMS alone (README: Table 5 over seeds and why):

  python -m vtlearn.main --config=configs/mcn.py:local --workdir=/tmp/mcn

`:tiny` is a smoke run for tests: 34 s from a cold start on 2 quiet CPU
cores (5 s compiling the init, 9 s the first step).

The paper's numbers on the benchmarks (Tables 1, 2, 4; appendix Table A), each
measured on the benchmark's own files by the evaluator named (a feature run
with audio: `features_dir` and `waveform_dir` hold the benchmark videos'
features and waveforms, `vtlearn.evaluation.benchmark`):
  youcook2            T→VA R@1/5/10 18.1 / 35.5 / 45.2; with full_video=True:
                      caption_avg 53.4 / 75.0 / 81.4, mv_clip 38.8 / 67.4 / 76.8,
                      mv_video 38.8 / 67.7 / 78.4
  msrvtt              10.5 / 25.2 / 33.8
  crosstask           recall 35.1 (aggregate=video), IoD 33.6, IoU 22.2;
                      clustering=True for the clustering metrics
  mining_youtube      recall 18.1, IoD 32.0, IoU 23.1; with clustering=True NMI
                      75.8, ARI 48.0, Acc 61.7, ⟨H⟩ 0.40, ⟨p_max⟩ 80.8
"""

import ml_collections

from vtlearn import config_defaults
from vtlearn.evaluation.base import section


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """`arg`: "" (paper), "local" (synthetic lab, 2 CPU cores) or "tiny" (tests)."""
    config = config_defaults.base_config("mcn" + (f"_{arg}" if arg else ""), "mcn")
    config.model = ml_collections.ConfigDict(dict(
        embedding_dim=4096,
        normalize=False,
        audio=dict(widths=(128, 256, 512, 1024), trainable=True),
        text=dict(word_dim=300, word2vec_path="", freeze_word_embeddings=True)))
    config.loss = ml_collections.ConfigDict(dict(
        contrastive="mms", margin=0.001,
        cluster="kmeans", target="centroid", labels="hard", centroid_terms="sum",
        cluster_weight=1.0, num_clusters=256, cluster_metric="euclidean",
        empty_clusters="farthest",
        refit_every=20, kmeans_iterations=100, kmeans_tolerance=1e-4,
        queue_batches=20, queue_fraction=0.5,
        sinkhorn_hidden=512, sinkhorn_epsilon=0.05, sinkhorn_iterations=3,
        sinkhorn_temperature=0.1,
        reconstruction="paper", reconstruction_weight=1.0, reconstruction_hidden=1024))
    config.data.update(sampler="merged", video=False, features_2d=2048, features_3d=2048,
                       feature_pooling="max_l2", audio_seconds=10.0, audio_rate=16000,
                       audio_features="log_mel", num_mel_bands=40, min_caption_seconds=10.0,
                       num_pairs=32, max_words=20, eval_num_clips=1)
    config.optimizer.update(learning_rate=1e-4, warmup_steps=5000, schedule="cosine")
    config.train.update(batch_size=128, num_steps=281_250)
    del config.evals["probe"]
    config.evals.retrieval_tv = section("retrieval", every=10_000, outputs=("embedding",))
    config.evals.retrieval_av = section("retrieval", every=10_000, query="audio",
                                        outputs=("embedding",))
    # Ground-truth segments as annotated (not widened to the 10-s training clips).
    config.evals.clustering = section("clustering", every=10_000,
                                      outputs=("embedding", "audio"), min_seconds=0.0)
    if arg in ("local", "tiny"):
        _small(config, arg)
    elif arg:
        raise ValueError(f"unknown preset {arg!r}: use '', 'local' or 'tiny'")
    return config


def _small(config: ml_collections.ConfigDict, preset: str) -> None:
    """The same method on the synthetic lab's features and audio, sized for 2 CPU cores."""
    from vtlearn.data import lab

    rate = 8000  # the lab's default; its "local" preset halves it for pixel runs
    config_defaults.use_lab(config, preset, frames=False, sample_rate=rate)
    settings = lab.lab_config(preset, frames=False, sample_rate=rate)
    config.data.update(features_2d=settings.features_2d, features_3d=settings.features_3d,
                       audio_rate=rate, max_words=16)
    config.model.embedding_dim = 256
    config.model.audio.widths = (16, 32, 32, 64)
    config.model.text.freeze_word_embeddings = False  # no word2vec: learn the words
    config.loss.update(num_clusters=64, queue_batches=20, reconstruction_hidden=128,
                       sinkhorn_hidden=128, kmeans_iterations=50)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=100)
    config.train.update(batch_size=16, num_steps=600, log_every=50, checkpoint_every=200)
    config.data.num_pairs = 8
    config_defaults.evaluate_every(config, 600)
    config.eval_batch_size = 64
    if preset == "tiny":
        config.model.embedding_dim = 32
        config.model.audio.widths = (8, 8, 16, 16)
        config.loss.update(num_clusters=8, queue_batches=2, refit_every=2,
                           kmeans_iterations=5, reconstruction_hidden=16, sinkhorn_hidden=16)
        config.data.update(num_pairs=4, audio_seconds=4.0)
        config.train.update(batch_size=8, num_steps=4, log_every=2, checkpoint_every=2)
        config_defaults.evaluate_every(config, 4)
        config.eval_batch_size = 16
