"""MCN (Chen et al., ICCV 2021), "Multimodal Clustering Networks".

Towers (§4.1; the release's `model_kmeans_ICCV.py`), D = `model.embedding_dim`:
  video f: the clip's pooled 2-D and 3-D features, concatenated, -> gated unit -> D;
  audio g: log-mel -> ResDAVEnet (`vtlearn.models.audio`) -> mean over time ->
    gated unit (width of the net) -> Linear -> D;
  text h: word vectors -> Linear D + ReLU -> max over words -> gated unit -> D.
No L2 normalisation (`model.normalize`): every loss takes raw dot products.

Loss (eq. 1) = contrastive + `cluster_weight` · clustering + `reconstruction_weight`
· reconstruction:
  * contrastive (`loss.contrastive`): "mms" (eq. 2-3, margin δ), "nce" (δ = 0)
    or "milnce" (δ = 0, and every clip of the same sample whose span
    overlaps is a positive too: MIL-NCE's bags, MCN's "MIL-NCE*" row) over
    the pairs (t, a), (v, t), (a, v) (`vtlearn.losses.mms`).
  * clustering (`loss.cluster` × `loss.target`, Table 6):
      - "kmeans": online k-means (eq. 5) of the fused embeddings M = (f + g + h) / 3
        (eq. 4) of the batch and a FIFO queue of earlier batches', refit every
        `refit_every` steps warm-started from the previous centroids, the batch
        assigned to the nearest centroid in between. Targets:
          "centroid" (eq. 6-7): each embedding contrasted against the
            centroids, the fused embedding's nearest centroid positive;
          "joint": a linear head over the K clusters predicts M's label from
            each modality's embedding (cross-entropy, DeepCluster-style);
          "swap": the same head predicts, from each modality's embedding, the
            labels of the other two (a modality's label: its own embedding's
            nearest centroid; XDC-style).
      - "sinkhorn" (SeLa): a 2-layer head scores the K clusters; labels are the
        Sinkhorn-Knopp equipartition of the batch's scores, of M's ("joint") or
        of the other modalities' ("swap"), used as soft distributions or
        their arg-max ("hard"); each modality's head output predicts them.
      - "none": MMS alone (Table 5's first rows).
    `centroid_terms` combines the modalities' terms: "sum" (eq. 7), "mean"
    (the release's default `--mean=0`: the sum / 3) or "fused" (the release's
    `--mean=1`, which its shell scripts pass: one term, the fused embedding's).
  * reconstruction (`loss.reconstruction`): "paper" (eq. 8-9: two linear
    layers per modality map its embedding back to itself; mean squared error
    per dimension, i.e. eq. 8's squared norm / D, summed over modalities),
    "release" (an MLP D -> hidden -> input with ReLUs rebuilds each tower's
    input: the video features, the audio net's pooled output, the text's
    pooled projected words; mean squared error summed over modalities; the
    release weighs it by 50) or "none".

Model state: {"audio": ResDAVEnet batch statistics, "clusters": k-means
centroids [K, D], FIFO queue [Q, D] of fused embeddings with its valid mask
[Q], whether the centroids were initialised, and the last refit's inertia
and empty-cluster count}. The trainer checkpoints it, keeps it replicated
(identical on every device) and rolls it back with the params on a
non-finite step. Q = `queue_batches` × B × round(n · `queue_fraction`):
the release keeps the first half of each sample's clips of 20 batches.
Until the queue is full, refits use the part filled so far (the release
waits until it is full); the first refit, at step 0, starts from K random
fused embeddings of the batch (with fewer than K, some start as duplicates).
A cluster left empty takes the farthest point (`loss.empty_clusters`, see
`vtlearn.losses.clustering`); `clusters/empty` logs how many were empty at
the last refit's last iteration.

The towers run sharded over the batch; their embeddings are then gathered
onto every device in one all-gather, and the losses run replicated. The
k-means refit runs inside the jitted step, on the devices: its points
(queue + batch) are split over the mesh, each device assigns its share, and
the centroid sums (and the farthest-point search for empty clusters) are
reduced across devices in each Lloyd iteration; the centroids and the queue
stay replicated. `benchmarks/kmeans_refit.py` measures a refit and its share
of a train step.

Retrieval (`similarity`, §4.3): text against the mean of the video and audio
similarities ("T→VA"); the retrieval evaluator's `outputs` picks others.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vtlearn import sharding
from vtlearn.alignment import l2_normalize
from vtlearn.data import pipeline
from vtlearn.data.text import Vocabulary
from vtlearn.losses import clustering
from vtlearn.losses.mms import multimodal_mms
from vtlearn.methods.base import Method
from vtlearn.methods.video_text import FEATURE_KEYS
from vtlearn.models import audio as audio_models
from vtlearn.models import text as text_models
from vtlearn.models import word2vec
from vtlearn.models.gated import BagOfWordsEncoder, GatedEmbeddingUnit
from vtlearn.models.torch_weights import read_state_dict

MODALITIES = ("video", "audio", "text")
PAIRS = (("text", "audio"), ("video", "text"), ("audio", "video"))
CHOICES = dict(contrastive=("mms", "nce", "milnce"), cluster=("kmeans", "sinkhorn", "none"),
               target=("centroid", "joint", "swap"), labels=("hard", "soft"),
               centroid_terms=("sum", "mean", "fused"), cluster_metric=clustering.METRICS,
               empty_clusters=clustering.EMPTY_CLUSTERS,
               reconstruction=("paper", "release", "none"))


class AudioTower(nn.Module):
    """Log-mel [N, F, M] (+ valid frames [N]) -> ([N, dim], pooled net output [N, C])."""

    dim: int
    widths: tuple[int, ...]
    normalize: bool

    @nn.compact
    def __call__(self, spectrogram, frames=None, train: bool = False):
        out = audio_models.ResDavenet(self.widths, name="davenet")(spectrogram, train)
        pooled = audio_models.pool(out, None if train else frames)
        gated = GatedEmbeddingUnit(self.widths[-1], normalize=False, name="gate")(pooled)
        embedding = nn.Dense(self.dim, name="projection")(gated)
        return (l2_normalize(embedding) if self.normalize else embedding), pooled


class Reconstructor(nn.Module):
    """Embedding [N, D] -> [N, out]: "paper" two linear layers, "release" an MLP with ReLUs."""

    hidden: int
    out: int
    kind: str

    @nn.compact
    def __call__(self, x):
        relu = nn.relu if self.kind == "release" else (lambda y: y)
        return relu(nn.Dense(self.out, name="decoder")(relu(nn.Dense(self.hidden,
                                                                     name="encoder")(x))))


class ClusterHead(nn.Module):
    """Embedding [N, D] -> cluster scores [N, K]: SeLa's 2-layer head, or one linear layer."""

    num_clusters: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(self.num_clusters, name="scores")(x)


class Mcn(Method):
    """See the module docstring."""

    def __init__(self, config, num_devices):
        super().__init__(config, num_devices)
        data, mc, lc = config.data, config.model, config.loss
        if (data.video or not any(data[k] for k in FEATURE_KEYS) or data.audio_seconds <= 0
                or data.audio_features != "log_mel"):
            raise ValueError(
                "method 'mcn' reads pooled features, log-mel audio and text: set "
                "config.data.video=False, data.features_2d/3d > 0, data.audio_seconds > 0 and "
                f"data.audio_features='log_mel' (got video={data.video}, features="
                f"{data.features_2d}/{data.features_3d}, audio_seconds={data.audio_seconds}, "
                f"audio_features={data.audio_features!r})")
        for key, allowed in CHOICES.items():
            if lc[key] not in allowed:
                raise ValueError(f"config.loss.{key} must be one of {allowed}, got {lc[key]!r}")
        if lc.cluster != "none" and lc.target == "swap" and lc.centroid_terms == "fused":
            raise ValueError("config.loss.centroid_terms='fused' has no per-modality labels to "
                             "swap: use 'sum' or 'mean' with loss.target='swap'")
        if lc.cluster == "kmeans" and lc.labels == "soft":
            raise ValueError("k-means gives hard labels only: config.loss.labels='soft' needs "
                             "loss.cluster='sinkhorn'")
        if lc.cluster == "sinkhorn" and lc.target == "centroid":
            raise ValueError("Sinkhorn clustering has no centroids: use loss.target='joint' or "
                             "'swap' with loss.cluster='sinkhorn'")
        if lc.contrastive == "milnce" and "span" not in pipeline.sample_spec(data):
            raise ValueError("config.loss.contrastive='milnce' needs each clip's span (bags of "
                             f"overlapping clips): data.sampler={data.sampler!r} gives none; use "
                             "data.sampler='merged'")
        for key in ("num_clusters", "refit_every", "kmeans_iterations", "queue_batches"):
            if lc[key] < (0 if key == "queue_batches" else 1):
                raise ValueError(f"config.loss.{key} must be positive, got {lc[key]}")
        if not 0 < lc.queue_fraction <= 1:
            raise ValueError(f"config.loss.queue_fraction must lie in (0, 1], got "
                             f"{lc.queue_fraction}")
        d = mc.embedding_dim
        self.video_model = GatedEmbeddingUnit(d, normalize=mc.normalize)
        self.audio_model = AudioTower(d, tuple(mc.audio.widths), mc.normalize)
        self.text_model = BagOfWordsEncoder(
            vocab_size=len(Vocabulary.load(data.vocab_path)), dim=d, word_dim=mc.text.word_dim,
            freeze_word_embeddings=mc.text.freeze_word_embeddings, project_words=d,
            normalize=mc.normalize)
        self.feature_dim = sum(data[k] for k in FEATURE_KEYS)
        inputs = dict(video=self.feature_dim, audio=mc.audio.widths[-1], text=d)
        self.reconstructors = {m: Reconstructor(lc.reconstruction_hidden,
                                                d if lc.reconstruction == "paper" else inputs[m],
                                                lc.reconstruction)
                               for m in MODALITIES}
        heads = lc.cluster == "sinkhorn" or (lc.cluster == "kmeans" and lc.target != "centroid")
        self.cluster_head = (ClusterHead(lc.num_clusters, lc.sinkhorn_hidden if
                                         lc.cluster == "sinkhorn" else 0) if heads else None)
        mesh = sharding.make_mesh()
        self.replicated, self.split = sharding.replicated(mesh), sharding.batch_sharding(mesh)
        n_keep = max(1, round(data.num_pairs * lc.queue_fraction))
        self.queue_rows = (n_keep, lc.queue_batches * config.train.batch_size * n_keep)

    # Towers ----------------------------------------------------------------

    def _features(self, clips):
        return jnp.concatenate([clips[k] for k in FEATURE_KEYS if k in clips], axis=-1)

    def _flat(self, batch):
        """Batch [B, n, ...] -> clips [B·n, ...]."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}

    def init(self, rng, batch):
        clip = {k: v[:1] for k, v in self._flat(batch).items()}
        keys = dict(zip(("video", "audio", "text", "recon", "head"), jax.random.split(rng, 5)))
        features = self._features(clip)
        audio_vars = self.audio_model.init(keys["audio"], clip["audio"], clip["audio_frames"],
                                           train=True)
        params = {"video": self.video_model.init(keys["video"], features)["params"],
                  "audio": audio_vars["params"],
                  "text": self.text_model.init(keys["text"], clip["text"])["params"]}
        d = self.config.model.embedding_dim
        if self.config.loss.reconstruction != "none":
            params["reconstruct"] = {
                m: r.init(jax.random.fold_in(keys["recon"], i), jnp.zeros([1, d]))["params"]
                for i, (m, r) in enumerate(self.reconstructors.items())}
        if self.cluster_head is not None:
            params["cluster_head"] = self.cluster_head.init(keys["head"],
                                                            jnp.zeros([1, d]))["params"]
        state = {"audio": audio_vars["batch_stats"]}
        if self.config.loss.cluster == "kmeans":
            k, (_, rows) = self.config.loss.num_clusters, self.queue_rows
            state["clusters"] = dict(
                centroids=jnp.zeros([k, d]), queue=jnp.zeros([rows, d]),
                queue_valid=jnp.zeros([rows], bool), initialized=jnp.zeros([], bool),
                inertia=jnp.zeros([]), empty=jnp.zeros([], jnp.int32))
        return params, state

    def with_pretrained(self, params):
        """Word vectors from `config.model.text.word2vec_path`, if set."""
        return word2vec.with_configured_vectors(params, self.config)

    def external_weights(self, path):
        """A pretrained ResDAVEnet from a PyTorch `.pth` (`config.model_init`): DAVEnet's
        state dict, or a checkpoint holding one (e.g. under "DAVEnet."). With
        `model.audio.trainable=False` it then stays fixed, as in the paper."""
        if not str(path).endswith((".pth", ".pt")):
            raise ValueError(f"config.model_init={path!r}: MCN reads a vtlearn run directory or "
                             "a PyTorch ResDAVEnet .pth for its audio net")
        variables = audio_models.from_torch(read_state_dict(path),
                                            tuple(self.config.model.audio.widths))
        return ({"audio": {"davenet": variables["params"]}},
                {"audio": {"davenet": variables["batch_stats"]}})

    def trainable(self, params):
        mask = text_models.trainable_mask(params, self.text_model.frozen_param_paths())
        if not self.config.model.audio.trainable:
            mask["audio"]["davenet"] = jax.tree.map(lambda _: False, mask["audio"]["davenet"])
        return mask

    def _video(self, params, clips):
        return self.video_model.apply({"params": params["video"]}, self._features(clips))

    def _audio(self, params, state, clips, train):
        """(embedding [N, D], pooled net output [N, C], new state)."""
        variables = {"params": params["audio"], "batch_stats": state["audio"]}
        if train and self.config.model.audio.trainable:
            (audio, pooled), updates = self.audio_model.apply(
                variables, clips["audio"], clips["audio_frames"], train=True,
                mutable=["batch_stats"])
            return audio, pooled, {**state, "audio": updates["batch_stats"]}
        audio, pooled = self.audio_model.apply(variables, clips["audio"], clips["audio_frames"])
        return audio, pooled, state

    # Loss ------------------------------------------------------------------

    def loss(self, params, state, batch, rng, step):
        lc = self.config.loss
        clips = self._flat(batch)
        mask = clips.pop("text_mask")
        positives = None
        if lc.contrastive == "milnce":  # same sample, overlapping spans
            b, n = batch["text_mask"].shape
            sample = jnp.arange(b * n) // n
            lo, hi = clips["span"][:, 0], clips["span"][:, 1]
            positives = jax.lax.with_sharding_constraint(
                (sample[:, None] == sample[None, :]) & (lo[:, None] < hi[None, :])
                & (lo[None, :] < hi[:, None]), self.replicated) | jnp.eye(b * n, dtype=bool)
        audio, audio_pooled, state = self._audio(params, state, clips, train=True)
        text, text_pooled = self.text_model.apply({"params": params["text"]}, clips["text"],
                                                  return_pooled=True)
        emb = self._gathered(dict(video=self._video(params, clips), audio=audio, text=text))
        inputs = dict(video=self._features(clips), audio=audio_pooled, text=text_pooled)
        mask = jax.lax.with_sharding_constraint(mask, self.replicated)
        if lc.cluster == "kmeans":
            fused = jax.lax.stop_gradient(sum(emb.values()) / len(emb))  # eq. 4
            clusters = self._refit_or_keep(state["clusters"], fused, mask, rng, step,
                                           batch["text_mask"].shape)
            state = {**state, "clusters": clusters}
        margin = lc.margin if lc.contrastive == "mms" else 0.0
        total, pair_losses = multimodal_mms(emb, PAIRS, margin, mask, positives)
        metrics = {f"mms/{k}": v for k, v in pair_losses.items()}
        if lc.cluster != "none":
            value, cluster_metrics = self._cluster_loss(params, state, emb, mask)
            total = total + lc.cluster_weight * value
            metrics |= cluster_metrics | {"cluster_loss": value}
        if lc.reconstruction != "none":
            value = self._reconstruction_loss(params, emb, inputs, mask)
            total = total + lc.reconstruction_weight * value
            metrics["reconstruction_loss"] = value
        return total, (state, metrics)

    def _gathered(self, emb: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The embeddings on every device, in one all-gather.

        The losses' B·n × B·n products then need no collective: several
        independent ones in flight at once starve XLA:CPU's thread pool on
        small machines (8 virtual devices, 2 cores) and deadlock.
        """
        stacked = jax.lax.with_sharding_constraint(jnp.stack(list(emb.values())),
                                                   self.replicated)
        return dict(zip(emb, stacked))

    def _cluster_loss(self, params, state, emb, mask):
        """Table 6's clustering term: (value, metrics); k-means state already refit."""
        lc = self.config.loss
        fused = jax.lax.stop_gradient(sum(emb.values()) / len(emb))  # eq. 4
        metrics = {}
        if lc.cluster == "kmeans":
            clusters = state["clusters"]
            metrics = {"clusters/inertia": clusters["inertia"],
                       "clusters/empty": clusters["empty"],
                       "clusters/queue_filled": jnp.mean(
                           clusters["queue_valid"].astype(jnp.float32))}
            centroids = clusters["centroids"]

            def labels(x):  # hard pseudo-labels: the nearest centroid
                return clustering.assign(x, centroids, lc.cluster_metric)
        else:
            def labels(x):  # SeLa: the equipartition of the head's scores over the batch
                q = clustering.sinkhorn_knopp(self._head(params, x), mask,
                                              lc.sinkhorn_epsilon, lc.sinkhorn_iterations)
                return jnp.argmax(q, -1) if lc.labels == "hard" else q

        # The embeddings that predict: each modality's, or only the fused one.
        predictors = ({"fused": sum(emb.values()) / len(emb)} if lc.centroid_terms == "fused"
                      else emb)
        if lc.target == "centroid":  # eq. 6
            target = labels(fused)
            terms = {m: clustering.centroid_contrastive(x, centroids, target, lc.margin, mask)
                     for m, x in predictors.items()}
        elif lc.target == "joint":  # everyone predicts the fused embedding's label
            target = labels(fused)
            terms = {m: self._predict(params, x, target, mask) for m, x in predictors.items()}
        else:  # swap: each modality predicts the other two's labels
            own = {m: labels(jax.lax.stop_gradient(x)) for m, x in emb.items()}
            terms = {m: sum(self._predict(params, x, own[o], mask) for o in emb if o != m)
                     / (len(emb) - 1) for m, x in emb.items()}
        total = sum(terms.values())
        if lc.centroid_terms == "mean":
            total = total / len(terms)
        return total, metrics

    def _head(self, params, x):
        return self.cluster_head.apply({"params": params["cluster_head"]}, x)

    def _predict(self, params, x, target, mask):
        """Cross-entropy of the cluster head's prediction for embeddings x against labels."""
        scores = self._head(params, x)
        if self.config.loss.cluster == "sinkhorn":
            scores = scores / self.config.loss.sinkhorn_temperature
        return clustering.cross_entropy(scores, target, mask)

    def _refit_or_keep(self, clusters, fused, mask, rng, step, sample_shape):
        """Every `refit_every` steps: k-means over queue + batch; then push the batch."""
        lc = self.config.loss
        points = jnp.concatenate([clusters["queue"], fused])  # replicated (`_gathered`)
        valid = jnp.concatenate([clusters["queue_valid"], mask])

        def refit(c):
            start = jnp.where(c["initialized"], c["centroids"],
                              clustering.init_centroids(points, valid, lc.num_clusters, rng))
            # Points split over the mesh: each device assigns its share, and the
            # partitioner reduces the centroid sums across devices.
            result = clustering.kmeans(jax.lax.with_sharding_constraint(points, self.split),
                                       jax.lax.with_sharding_constraint(valid, self.split),
                                       start, lc.kmeans_iterations,
                                       lc.cluster_metric, lc.kmeans_tolerance,
                                       lc.empty_clusters)
            return {**c, "centroids": result.centroids, "initialized": jnp.ones([], bool),
                    "inertia": result.inertia, "empty": result.empty}

        clusters = jax.lax.cond(step % lc.refit_every == 0, refit, lambda c: c, clusters)
        n_keep, rows = self.queue_rows
        if rows:
            b, n = sample_shape
            newest = fused.reshape(b, n, -1)[:, :n_keep].reshape(b * n_keep, -1)
            newest_valid = mask.reshape(b, n)[:, :n_keep].reshape(-1)
            clusters = {**clusters,
                        "queue": jnp.concatenate([clusters["queue"], newest])[-rows:],
                        "queue_valid": jnp.concatenate([clusters["queue_valid"],
                                                        newest_valid])[-rows:]}
        return clusters

    def _reconstruction_loss(self, params, emb, inputs, mask):
        kind = self.config.loss.reconstruction
        total = 0.0
        for m, x in emb.items():
            target = x if kind == "paper" else inputs[m]
            rebuilt = self.reconstructors[m].apply({"params": params["reconstruct"][m]}, x)
            per_clip = jnp.mean((rebuilt - target) ** 2, axis=-1)
            total = total + jnp.sum(jnp.where(mask, per_clip, 0.0)) / jnp.maximum(
                jnp.sum(mask), 1)
        return total

    # Embedding for evaluation ----------------------------------------------

    def embed_video(self, params, state, clips):
        return {"embedding": self._video(params, clips),
                "audio": self._audio(params, state, clips, train=False)[0]}

    def embed_text(self, params, state, text):
        return self.text_model.apply({"params": params["text"]}, text)

    def similarity(self, text, video):
        """T→VA (§4.3): the mean of text·video and text·audio."""
        if "audio" not in video:
            raise ValueError("MCN scores text against video and audio embeddings: pass "
                             "the dict of Model.video_outputs(clips), not embed_video's array")
        text = np.asarray(text, np.float64)
        return 0.5 * (text @ np.asarray(video["embedding"], np.float64).T
                      + text @ np.asarray(video["audio"], np.float64).T)
