"""ResDAVEnet's layout and its time pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtlearn.models import audio


def test_resdavenet_reduces_time_sixteenfold_and_keeps_bands_as_channels():
    net = audio.ResDavenet(widths=(4, 8, 8, 16))
    x = jnp.ones((2, 100, 40))
    variables = net.init(jax.random.PRNGKey(0), x, train=True)
    assert variables["params"]["conv_bands"]["kernel"].shape == (1, 40, 4)  # the 40x1 kernel
    assert variables["params"]["stage1_block0"]["conv1"]["kernel"].shape == (9, 4, 8)
    out, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (2, 7, 16)  # ceil(100 / 16)
    assert not np.allclose(updates["batch_stats"]["bn_bands"]["mean"],
                           variables["batch_stats"]["bn_bands"]["mean"])


def test_pool_averages_all_steps_or_the_valid_ones():
    out = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    np.testing.assert_allclose(audio.pool(out), np.asarray(out).mean(1))
    pooled = audio.pool(out, jnp.array([40, 3]))  # 40 frames -> 2 steps; 3 -> at least 1
    np.testing.assert_allclose(pooled[0], np.asarray(out)[0, :2].mean(0))
    np.testing.assert_allclose(pooled[1], np.asarray(out)[1, 0])


def _torch_resdavenet(state, x):
    """ResDAVEnet's forward in torch functional ops, written from its description
    (MCN's `model_davenet.py`): eval-mode BN, stem conv over all mel bands, then
    residual blocks of two 1x9 convs, stride 2 in time at each stage's first block."""
    import torch.nn.functional as F

    def bn(y, key):
        return F.batch_norm(y, state[f"{key}.running_mean"], state[f"{key}.running_var"],
                            state[f"{key}.weight"], state[f"{key}.bias"], False, 0.0, 1e-5)

    y = x.transpose(1, 2).unsqueeze(1)  # [N, F, M] -> [N, 1, M, F]
    y = F.relu(bn(F.conv2d(y, state["DAVEnet.conv1.weight"]), "DAVEnet.bn1"))
    for s in range(4):
        for b in range(2):
            key, stride = f"DAVEnet.layer{s + 1}.{b}", 2 if b == 0 else 1
            out = F.relu(bn(F.conv2d(y, state[f"{key}.conv1.weight"], stride=stride,
                                     padding=(0, 4)), f"{key}.bn1"))
            out = bn(F.conv2d(out, state[f"{key}.conv2.weight"], padding=(0, 4)), f"{key}.bn2")
            if b == 0:
                y = bn(F.conv2d(y, state[f"{key}.downsample.0.weight"], stride=stride),
                       f"{key}.downsample.1")
            y = F.relu(out + y)
    return y.squeeze(2).transpose(1, 2)  # [N, F', C]


def _random_state(widths, mel=40, prefix="DAVEnet."):
    """A ResDAVEnet state dict of random torch tensors (the release's key layout)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    shapes = {f"{prefix}conv1.weight": (widths[0], 1, mel, 1)}
    bns = {f"{prefix}bn1": widths[0], f"{prefix}batchnorm1": 1}
    width_in = widths[0]
    for s, w in enumerate(widths):
        for b in range(2):
            key = f"{prefix}layer{s + 1}.{b}"
            shapes[f"{key}.conv1.weight"] = (w, width_in if b == 0 else w, 1, 9)
            shapes[f"{key}.conv2.weight"] = (w, w, 1, 9)
            bns |= {f"{key}.bn1": w, f"{key}.bn2": w}
            if b == 0:
                shapes[f"{key}.downsample.0.weight"] = (w, width_in, 1, 1)
                bns[f"{key}.downsample.1"] = w
        width_in = w
    state = {k: 0.3 * torch.randn(v, generator=gen) for k, v in shapes.items()}
    for key, c in bns.items():
        state |= {f"{key}.weight": 1 + 0.1 * torch.randn(c, generator=gen),
                  f"{key}.bias": 0.1 * torch.randn(c, generator=gen),
                  f"{key}.running_mean": 0.1 * torch.randn(c, generator=gen),
                  f"{key}.running_var": 0.5 + torch.rand(c, generator=gen),
                  f"{key}.num_batches_tracked": torch.tensor(3)}
    return state


def test_a_torch_resdavenet_state_dict_loads_and_computes_the_same(tmp_path):
    import torch

    from vtlearn.models.torch_weights import read_state_dict

    widths, mel = (4, 8, 8, 16), 40
    state = _random_state(widths, mel)
    path = tmp_path / "mcn_checkpoint.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    variables = audio.from_torch(read_state_dict(path), widths)
    spectrogram = torch.randn(2, 37, mel, generator=torch.Generator().manual_seed(1))
    ours = audio.ResDavenet(widths).apply(variables, spectrogram.numpy(), train=False)
    with torch.no_grad():
        expected = _torch_resdavenet(state, spectrogram).numpy()
    assert ours.shape == expected.shape == (2, 3, 16)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    del state["DAVEnet.layer2.0.bn1.running_var"]
    with pytest.raises(ValueError, match=r"lacks 1 tensor.*DAVEnet.layer2.0.bn1.running_var"):
        audio.from_torch({k: v.numpy() for k, v in state.items()}, widths)


def test_mcn_starts_from_a_davenet_pth_and_keeps_it_fixed(tmp_path):
    """The paper's "pre-trained DAVEnet, fixed": model_init=.pth, audio.trainable=False."""
    import pathlib

    import torch

    from vtlearn import api, sharding, train
    from vtlearn.config_defaults import load_config
    from vtlearn.data import pipeline, sources

    config = load_config(f"{pathlib.Path(__file__).parents[2]}/configs/mcn.py:tiny")
    config.data.lab_dir = str(tmp_path / "lab")
    state = _random_state(tuple(config.model.audio.widths), prefix="")
    torch.save(state, tmp_path / "davenet.pth")
    config.model_init = str(tmp_path / "davenet.pth")
    config.model.audio.trainable = False
    config = sources.resolve_data(config)
    trainer = train.Trainer(config, sharding.make_mesh())
    start = trainer.init_state(api.load_pretrained(config.model_init, config, trainer.method))
    davenet = jax.device_get(start.params["audio"]["davenet"])
    np.testing.assert_array_equal(davenet["conv_bands"]["kernel"],
                                  state["conv1.weight"].numpy()[:, 0, :, 0].T[None])
    np.testing.assert_array_equal(
        jax.device_get(start.model_state["audio"]["davenet"]["bn_bands"]["var"]),
        state["bn1.running_var"].numpy())
    rng = np.random.default_rng(0)
    batch = {k: (rng.integers(1, 5, (config.train.batch_size,) + shape) if k == "text"
                 else np.ones((config.train.batch_size,) + shape) if k in ("text_mask",
                                                                             "audio_frames")
                 else rng.normal(size=(config.train.batch_size,) + shape)).astype(dtype)
             for k, (shape, dtype) in pipeline.sample_spec(config.data).items()}
    video = jax.device_get(start.params["video"])
    after = start
    for _ in range(2):  # the warm-up's first learning rate is 0
        after, _ = trainer.train_step(after, sharding.global_batch(batch, trainer.mesh))
    jax.tree.map(np.testing.assert_array_equal, davenet,
                 jax.device_get(after.params["audio"]["davenet"]))
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), video,
                           jax.device_get(after.params["video"]))
    assert all(jax.tree.leaves(changed))  # the rest trains
