"""Methods on the mesh: sharded loss/gradients equal single-device ones; VT-TWINS trains."""

import json
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from vtlearn import sharding, train
from vtlearn.config_defaults import load_config
from vtlearn.config_defaults import use_lab_features
from vtlearn.data import pipeline, sources
from vtlearn.data.text import Vocabulary
from vtlearn.losses import milnce as milnce_losses
from vtlearn.methods import get_method

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lab"))


def _batch(config, rng):
    b, k, d = config.train.batch_size, config.data.num_candidates, config.data
    if d.video:
        clips = {"video": rng.uniform(size=(b, d.num_frames, d.crop_size, d.crop_size, 3))}
    else:
        clips = {key: rng.normal(size=(b, d[key])) for key in ("features_2d", "features_3d")}
    return {
        **{key: x.astype(np.float32) for key, x in clips.items()},
        "text": rng.integers(0, 20, (b, k, d.max_words)).astype(np.int32),
        "text_mask": np.arange(k)[None].repeat(b, 0) < rng.integers(1, k + 1, (b, 1)),
    }


def test_sharded_milnce_equals_single_device(lab_dir):
    # The feature tower has the same BatchNorm as S3D-G, so this checks global
    # negatives and cross-replica statistics in seconds instead of minutes
    # (S3D-G itself trains sharded in tests/test_train.py).
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = lab_dir
    use_lab_features(config)
    config = sources.resolve_data(config)
    method = get_method("milnce")(config, num_devices=8)
    batch = _batch(config, np.random.default_rng(0))
    params, state = method.init(jax.random.PRNGKey(0), batch)
    rng = jax.random.PRNGKey(1)

    def loss(p, s, b):
        return method.loss(p, s, b, rng, 0)[0]

    grad_fn = jax.jit(jax.value_and_grad(loss))
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    sharded = grad_fn(params, state, sharding.global_batch(batch, mesh))
    one = jax.devices()[0]
    single = grad_fn(
        jax.device_put(params, one), jax.device_put(state, one), jax.device_put(batch, one)
    )
    np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=1e-5)
    jax.tree.map(
        # Float32 sums run in another order across devices, and BatchNorm's
        # backward cancels large sums (single elements measured 11% off), so
        # compare each gradient as a whole: wrong negatives or per-device BN
        # statistics change it by O(1).
        lambda a, b: np.testing.assert_array_less(
            np.linalg.norm(np.asarray(a) - np.asarray(b)),
            5e-2 * np.linalg.norm(np.asarray(b)) + 1e-7),
        sharded[1], single[1]
    )
    assert all(g.sharding.is_fully_replicated for g in jax.tree.leaves(sharded[1]))


def test_vttwins_trains_on_the_lab(lab_dir, tmp_path):
    # On the feature tower: the clip sequences [B, n, D] go through the same
    # VideoTextMethod.apply_video as S3D-G's [B, n, T, H, W, 3] pixels.
    config = load_config(f"{ROOT}/configs/vttwins_s3d.py:tiny")
    config.data.lab_dir = lab_dir
    use_lab_features(config)
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["retrieval/num_queries"] > 1 and "probe/top1" in metrics
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["split"] == "train"]
    assert train_lines and all(np.isfinite(x["loss"]) for x in train_lines)
    # Each sample is a sequence of n clips: throughput counts all of them.
    assert train.clips_per_step(config) == config.train.batch_size * config.data.num_pairs
    milnce = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    assert train.clips_per_step(milnce) == milnce.train.batch_size


class _TinyVideo(nn.Module):
    """Stand-in backbone with S3D-G's endpoints, so the wiring test compiles in seconds."""

    @nn.compact
    def __call__(self, video, train):
        features = nn.Dense(1024)(video.mean(axis=(1, 2, 3)))
        features = nn.BatchNorm(use_running_average=not train, momentum=0.9)(features)
        return {"mixed_5c": features, "video_embedding": nn.Dense(8)(features)}


def _wired_milnce(tmp_path, **loss):
    """A MilNce method with the stand-in backbone, a batch, params and state."""
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    Vocabulary([f"w{i}" for i in range(19)]).save(tmp_path / "vocab.txt")
    config.data.vocab_path = str(tmp_path / "vocab.txt")
    config.model.update(embedding_dim=8)
    config.model.text.update(hidden_dim=16, word_dim=6)
    config.loss.update({"temperature": 0.0, **loss})  # the paper's raw dot products by default
    method = get_method("milnce")(config, num_devices=1)
    method.video_model = _TinyVideo()
    batch = _batch(config, np.random.default_rng(0))
    params, state = method.init(jax.random.PRNGKey(0), batch)
    return method, batch, params, state


def test_milnce_temperature_scores_cosine_over_temperature(tmp_path):
    method, batch, params, state = _wired_milnce(tmp_path, temperature=0.1)
    value, _ = method.loss(params, state, batch, jax.random.PRNGKey(1), 0)
    out, _ = method.video_model.apply({"params": params["video"], "batch_stats": state["video"]},
                                      batch["video"], train=True, mutable=["batch_stats"])
    video = np.asarray(out["video_embedding"], np.float64)
    text = np.asarray(method.text_model.apply({"params": params["text"]}, batch["text"]),
                      np.float64)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    want, _ = milnce_losses.milnce_family_loss(unit(video) / 0.1, unit(text), batch["text_mask"])
    np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
    # Evaluation scores the same cosine similarities.
    embedded = method.embed_video(params, state, {"video": batch["video"]})["embedding"]
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(method.embed_text(params, state, batch["text"]),
                                              axis=-1), 1.0, rtol=1e-5)


def test_milnce_rejects_a_negative_temperature(tmp_path):
    with pytest.raises(ValueError, match="config.loss.temperature"):
        _wired_milnce(tmp_path, temperature=-0.1)


@pytest.mark.parametrize("kind", ["milnce", "max_nce", "attn_nce", "cat_nce"])
def test_milnce_method_feeds_the_loss_family(kind, tmp_path):
    """MilNce.loss == milnce_family_loss on embeddings computed by hand (Attn+NCE's
    attention logits from eqs. 7-9: head(mixed_5c) . head(pooled words))."""
    method, batch, params, state = _wired_milnce(tmp_path, kind=kind)
    value, (new_state, _) = method.loss(params, state, batch, jax.random.PRNGKey(1), 0)

    out, _ = method.video_model.apply({"params": params["video"], "batch_stats": state["video"]},
                                      batch["video"], train=True, mutable=["batch_stats"])
    tokens, mask = batch["text"], batch["text_mask"]
    if kind == "cat_nce":
        tokens, mask = milnce_losses.concat_candidate_tokens(tokens, mask), mask[:, :1]
    text, pooled = method.text_model.apply({"params": params["text"]}, tokens,
                                           return_pooled=True)
    extra = {}
    if kind == "attn_nce":
        def head(p, x):
            return np.asarray(x) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])

        av = head(params["attn_video"], out["mixed_5c"])
        at = head(params["attn_text"], pooled)
        extra["attention_logits"] = np.einsum("bd,bkd->bk", av, at)
    want, _ = milnce_losses.milnce_family_loss(
        out["video_embedding"], text, mask, kind=kind, negatives="xy", **extra)
    np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
    assert not jax.tree.all(jax.tree.map(np.array_equal, new_state, state))  # BN updated
    if kind == "attn_nce":
        rng = jax.random.PRNGKey(1)
        grads = jax.grad(lambda p: method.loss(p, state, batch, rng, 0)[0])(params)
        assert all(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads["attn_text"]))
        assert all(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads["attn_video"]))


def test_hessel_heads_are_gated_and_sharded_loss_equals_single_device(lab_dir):
    from vtlearn.models.gated import BagOfWordsEncoder, GatedEmbeddingUnit

    # The gated unit against its equations (Miech et al. 2018, §3.1) in NumPy.
    x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    unit = GatedEmbeddingUnit(4)
    p = unit.init(jax.random.PRNGKey(0), x)["params"]
    y1 = x @ np.asarray(p["fc"]["kernel"]) + np.asarray(p["fc"]["bias"])
    y2 = y1 / (1 + np.exp(-(y1 @ np.asarray(p["gate"]["kernel"]) + np.asarray(p["gate"]["bias"]))))
    np.testing.assert_allclose(unit.apply({"params": p}, x),
                               y2 / np.linalg.norm(y2, axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-6)
    # Words: max-pool over real words only; a caption of padding embeds to zeros.
    encoder = BagOfWordsEncoder(vocab_size=9, dim=4, word_dim=3)
    ids = np.array([[1, 2, 0], [0, 0, 0]], np.int32)
    q = encoder.init(jax.random.PRNGKey(1), ids)["params"]
    table = np.asarray(q["word_embd"]["embedding"])
    pooled = np.maximum(table[1], table[2])
    expected = GatedEmbeddingUnit(4).apply({"params": q["head"]}, pooled[None])
    out = encoder.apply({"params": q}, ids)
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)

    config = load_config(f"{ROOT}/configs/hessel.py:tiny")
    config.data.lab_dir = lab_dir
    config = sources.resolve_data(config)
    method = get_method("hessel")(config, num_devices=8)
    batch = next(pipeline.iterate_train(config.data, config.train.batch_size))
    batch = {k: v for k, v in batch.items() if k != "index"}
    params, state = method.init(jax.random.PRNGKey(0), batch)
    grad_fn = jax.jit(jax.value_and_grad(
        lambda p, b: method.loss(p, state, b, jax.random.PRNGKey(1), 0)[0]))
    single = grad_fn(params, batch)
    sharded = grad_fn(params, sharding.global_batch(batch, sharding.make_mesh()))
    assert float(single[0]) > 0
    np.testing.assert_allclose(sharded[0], single[0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 sharded[1], single[1])
