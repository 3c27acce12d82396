"""MCN on the mesh: every loss variant trains, the k-means state behaves, resume keeps it."""

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vtlearn import sharding, train
from vtlearn.config_defaults import evaluate_every, load_config
from vtlearn.data import pipeline, sources
from vtlearn.data.text import Vocabulary
from vtlearn.losses import clustering
from vtlearn.methods import get_method

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lab"))


def _config(lab_dir, **loss):
    config = load_config(f"{ROOT}/configs/mcn.py:tiny")
    config.data.lab_dir = lab_dir
    config.loss.update(loss)
    return sources.resolve_data(config)


def _batch(config, rng, nan=False):
    """A random global batch of the sampler's spec."""
    vocab = len(Vocabulary.load(config.data.vocab_path))
    out = {}
    for key, (shape, dtype) in pipeline.sample_spec(config.data).items():
        shape = (config.train.batch_size,) + shape
        if key == "text":
            out[key] = rng.integers(1, vocab, shape).astype(dtype)
        elif key in ("text_mask",):
            out[key] = np.ones(shape, dtype)
        elif key == "audio_frames":
            out[key] = rng.integers(1, 400, shape).astype(dtype)
        elif key == "label":
            out[key] = np.zeros(shape, dtype)
        elif key == "span":
            start = rng.uniform(0, 20, shape[:-1])
            out[key] = np.stack([start, start + 10], -1).astype(dtype)
        else:
            out[key] = rng.normal(size=shape).astype(dtype)
    if nan:
        out["features_2d"][0, 0, 0] = np.nan
    return out


VARIANTS = {  # Table 5 rows, then Table 6's clustering pipelines, then the release's options
    "nce": dict(contrastive="nce", cluster="none", reconstruction="none"),
    "milnce": dict(contrastive="milnce", cluster="none", reconstruction="none"),
    "mms": dict(cluster="none", reconstruction="none"),
    "mms+cluster": dict(reconstruction="none"),
    "mms+cluster+recon": dict(),
    "kmeans-swap": dict(target="swap"),
    "kmeans-joint": dict(target="joint"),
    "sinkhorn-swap-soft": dict(cluster="sinkhorn", target="swap", labels="soft"),
    "sinkhorn-joint-hard": dict(cluster="sinkhorn", target="joint"),
    "release": dict(cluster_metric="cosine", empty_clusters="zero", centroid_terms="fused",
                    reconstruction="release", reconstruction_weight=50.0),
    "release-mean": dict(centroid_terms="mean"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_trains_with_finite_loss_and_gradients(lab_dir, name):
    config = _config(lab_dir, **VARIANTS[name])
    trainer = train.Trainer(config, sharding.make_mesh())
    state = trainer.init_state()
    mesh = trainer.mesh
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(2):
        state, metrics = trainer.train_step(state, sharding.global_batch(_batch(config, rng),
                                                                         mesh))
        losses.append(float(metrics["loss"]))
        assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    assert int(state.num_nonfinite) == 0 and np.all(np.isfinite(losses))
    assert ("cluster_loss" in metrics) == (config.loss.cluster != "none")
    assert ("reconstruction_loss" in metrics) == (config.loss.reconstruction != "none")
    assert {"mms/text_audio", "mms/video_text", "mms/audio_video"} <= set(metrics)


def test_kmeans_state_refits_every_r_steps_and_the_queue_is_fifo(lab_dir):
    config = _config(lab_dir, refit_every=2, queue_batches=2, queue_fraction=0.5)
    method = get_method("mcn")(config, 8)
    rng = np.random.default_rng(1)
    batches = [_batch(config, rng) for _ in range(3)]
    params, state = method.init(jax.random.PRNGKey(0), batches[0])
    b, n = batches[0]["text_mask"].shape
    fused = []
    loss = jax.jit(method.loss)
    for step, batch in enumerate(batches):
        before = state["clusters"]
        _, (state, _) = loss(params, state, batch, jax.random.PRNGKey(step), step)
        c = state["clusters"]
        emb = _embeddings(method, params, batch)
        fused.append(np.mean(emb, axis=0).reshape(b, n, -1))
        points = np.concatenate([np.asarray(before["queue"]), fused[-1].reshape(b * n, -1)])
        valid = np.concatenate([np.asarray(before["queue_valid"]), np.ones(b * n, bool)])
        if step % 2 == 0:  # a refit: k-means of queue + batch, warm-started after step 0
            start = np.asarray(before["centroids"]) if step else np.asarray(c["centroids"])
            expected = clustering.kmeans(points, valid, start, config.loss.kmeans_iterations,
                                         tolerance=config.loss.kmeans_tolerance,
                                         empty_clusters=config.loss.empty_clusters)
            if step:
                np.testing.assert_allclose(c["centroids"], expected.centroids, atol=1e-4)
            assert bool(c["initialized"])
        else:
            np.testing.assert_array_equal(c["centroids"], before["centroids"])
        # FIFO: the newest rows are this batch's first n/2 clips of each sample.
        newest = fused[-1][:, : n // 2].reshape(-1, fused[-1].shape[-1])
        np.testing.assert_allclose(np.asarray(c["queue"])[-len(newest):], newest, atol=1e-5)
    rows = 2 * b * (n // 2)
    assert c["queue"].shape[0] == rows and bool(np.all(c["queue_valid"]))
    oldest = fused[1][:, : n // 2].reshape(-1, fused[1].shape[-1])  # batch 0 was pushed out
    np.testing.assert_allclose(np.asarray(c["queue"])[: len(oldest)], oldest, atol=1e-5)


def test_the_refit_splits_its_points_over_the_mesh(lab_dir):
    """Each device's Lloyd iterations see N/8 points; centroid sums are all-reduced."""
    config = _config(lab_dir, num_clusters=5, queue_batches=2, refit_every=1)
    trainer = train.Trainer(config, sharding.make_mesh())
    batch = sharding.global_batch(_batch(config, np.random.default_rng(3)), trainer.mesh)
    hlo = jax.jit(trainer._step).lower(trainer.init_state(), batch).compile().as_text()
    b, n = batch["text_mask"].shape
    points = trainer.method.queue_rows[1] + b * n
    d, devices = config.model.embedding_dim, jax.device_count()
    assert points % devices == 0 and points // devices not in (points, 5)
    loops = [c for c in hlo.split("\n\n") if c.lstrip("%").split(" ")[0].startswith("wide")
             or "_spmd" in c.split("\n")[0]]
    lloyd = [c for c in loops if f"f32[{points // devices},{d}]" in c.split("\n")[0]
             and "all-reduce" in c]
    assert lloyd, "no loop over this device's share of the points with an all-reduce"
    assert not any(f"f32[{points},{d}]" in c.split("\n")[0] for c in lloyd)


def _embeddings(method, params, batch):
    """[3, B·n, D]: video, audio, text embeddings as in training (BN batch statistics)."""
    clips = method._flat(batch)
    state = method.init(jax.random.PRNGKey(0), batch)[1]
    audio = method._audio(params, state, clips, train=True)[0]
    text = method.text_model.apply({"params": params["text"]}, clips["text"])
    return np.stack([np.asarray(method._video(params, clips)), np.asarray(audio),
                     np.asarray(text)])


def test_a_nonfinite_step_rolls_back_the_clusters_too(lab_dir):
    config = _config(lab_dir, refit_every=1)
    trainer = train.Trainer(config, sharding.make_mesh())
    rng = np.random.default_rng(2)
    state, _ = trainer.train_step(trainer.init_state(),
                                  sharding.global_batch(_batch(config, rng), trainer.mesh))
    before = jax.tree.map(np.asarray, state.model_state)
    state, _ = trainer.train_step(state, sharding.global_batch(_batch(config, rng, nan=True),
                                                                trainer.mesh))
    assert int(state.num_nonfinite) == 1
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray,
                                                                      state.model_state))


def test_bad_loss_settings_name_the_key(lab_dir):
    for loss, match in ((dict(cluster="spectral"), "config.loss.cluster"),
                        (dict(target="swap", centroid_terms="fused"), "centroid_terms"),
                        (dict(labels="soft"), "hard labels only"),
                        (dict(queue_fraction=0.0), "queue_fraction")):
        with pytest.raises(ValueError, match=match):
            get_method("mcn")(_config(lab_dir, **loss), 8)
    config = _config(lab_dir)
    config.data.audio_features = "waveform"
    with pytest.raises(ValueError, match="audio_features='log_mel'"):
        get_method("mcn")(config, 8)
    config = _config(lab_dir, contrastive="milnce")
    config.data.sampler = "sequence"
    with pytest.raises(ValueError, match="needs each clip's span"):
        get_method("mcn")(config, 8)


def _state(workdir, step):
    return ocp.StandardCheckpointer().restore(f"{workdir}/checkpoints/{step}/state")


@pytest.mark.slow
def test_mcn_trains_evaluates_and_resumes_with_its_queue_and_centroids(lab_dir, tmp_path):
    """The README's MCN command at tiny size, then resume = uninterrupted (clusters included)."""
    def config(steps):
        c = load_config(f"{ROOT}/configs/mcn.py:tiny")
        c.data.lab_dir = lab_dir
        c.train.update(num_steps=steps, checkpoint_every=2)
        c.loss.refit_every = 3  # a refit after the resume point
        evaluate_every(c, 0)
        return c

    straight, split = tmp_path / "straight", tmp_path / "split"
    metrics = train.train_and_evaluate(_with_lab(lab_dir), str(tmp_path / "eval"))
    assert {"retrieval/t2v/R@10", "retrieval_tv/t2v/R@10", "retrieval_av/t2v/R@10",
            "clustering/NMI", "clustering/random/NMI"} <= set(metrics)
    train.train_and_evaluate(config(4), str(straight))
    train.train_and_evaluate(config(2), str(split))
    train.train_and_evaluate(config(4), str(split))  # resumes at 2
    a, b = _state(straight, 4), _state(split, 4)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
    at_two = _state(split, 2)["model_state"]["clusters"]
    final = a["model_state"]["clusters"]
    assert bool(final["initialized"]) and not np.allclose(at_two["queue"], final["queue"])
    assert not np.allclose(at_two["centroids"], final["centroids"])  # refit at step 3


def _with_lab(lab_dir):
    c = load_config(f"{ROOT}/configs/mcn.py:tiny")
    c.data.lab_dir = lab_dir
    return c
