"""Import of the public MIL-NCE S3D release (PyTorch state dict + word list).

The state dict is generated here from the release's key layout (written out
independently of vtlearn), saved with torch, imported, and checked tensor by
tensor; then a forward pass with torch functional ops that follows the
release's own padding rules is compared with vtlearn's forward.
"""

import fractions
import pathlib
import pickle
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vtlearn

from vtlearn.models import layers
from vtlearn.models.milnce_release import (
    convert_state_dict,
    load_release,
    load_word_list,
    release_models,
    release_vocabulary,
)

BLOCKS = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
WORDS = ["open", "door", "cut", "tomato", "the", "knife"]
ROWS = len(WORDS) + 1


def release_layout(rows: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of `s3d_howto100m.pth` (as in the release's module tree)."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{leaf}"] = (c,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    def unit(prefix, cin, cout, kernel):
        layout[f"{prefix}.conv1.weight"] = (cout, cin, *kernel)
        bn(f"{prefix}.bn1", cout)

    def separable(prefix, cin, cout):
        layout[f"{prefix}.conv1.weight"] = (cout, cin, 1, 3, 3)
        bn(f"{prefix}.bn1", cout)
        layout[f"{prefix}.conv2.weight"] = (cout, cout, 3, 1, 1)
        bn(f"{prefix}.bn2", cout)

    def linear(prefix, cin, cout):
        layout[f"{prefix}.weight"] = (cout, cin)
        layout[f"{prefix}.bias"] = (cout,)

    unit("conv1", 24, 64, (2, 4, 4))
    unit("conv_2b", 64, 64, (1, 1, 1))
    separable("conv_2c", 64, 192)
    linear("gating.fc", 192, 192)
    cin = 192
    for name, (w0, w1a, w1b, w2a, w2b, w3) in BLOCKS.items():
        unit(f"{name}.conv_b0", cin, w0, (1, 1, 1))
        unit(f"{name}.conv_b1_a", cin, w1a, (1, 1, 1))
        separable(f"{name}.conv_b1_b", w1a, w1b)
        unit(f"{name}.conv_b2_a", cin, w2a, (1, 1, 1))
        separable(f"{name}.conv_b2_b", w2a, w2b)
        unit(f"{name}.conv_b3_b", cin, w3, (1, 1, 1))
        for i, c in enumerate((w0, w1b, w2b, w3)):
            linear(f"{name}.gating_b{i}.fc", c, c)
        cin = w0 + w1b + w2b + w3
    linear("fc", 1024, 512)
    layout["text_module.word_embd.weight"] = (rows, 300)
    linear("text_module.fc1", 300, 2048)
    linear("text_module.fc2", 2048, 512)
    return layout


def random_state_dict(rows: int) -> dict[str, torch.Tensor]:
    """Random tensors that keep activations O(1) through the network."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in release_layout(rows).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var") or (".bn" in key and key.endswith("weight")):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) >= 2 and not key.endswith("word_embd.weight"):
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=gen) * (2 / fan_in) ** 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


@pytest.fixture(scope="module")
def release_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    state = random_state_dict(ROWS)
    torch.save(state, folder / "s3d_howto100m.pth")
    np.save(folder / "s3d_dict.npy", np.array(WORDS))
    return folder, state


@pytest.fixture(scope="module")
def imported(release_files):
    folder, state = release_files
    vocab, variables = load_release(folder / "s3d_howto100m.pth", folder / "s3d_dict.npy")
    return state, vocab, variables


def lookup(tree, path):
    for key in path:
        tree = tree[key]
    return np.asarray(tree)


def test_every_tensor_lands_where_it_belongs(imported):
    state, vocab, variables = imported
    assert vocab.words == tuple(WORDS)
    seen = set()
    for key, tensor in state.items():
        *modules, leaf = key.split(".")
        if leaf == "num_batches_tracked":
            continue
        source = tensor.numpy()
        model = "text" if modules[0] == "text_module" else "video"
        modules = modules[1:] if model == "text" else modules
        if modules[-1].startswith("bn"):
            collection, name = {
                "weight": ("params", "scale"),
                "bias": ("params", "bias"),
                "running_mean": ("batch_stats", "mean"),
                "running_var": ("batch_stats", "var"),
            }[leaf]
            expected = source
        elif modules[-1] == "word_embd":
            collection, name, expected = "params", "embedding", source
        elif leaf == "weight" and source.ndim == 5:
            collection, name = "params", "kernel"
            expected = np.einsum("oithw->thwio", source)
        elif leaf == "weight":
            collection, name, expected = "params", "kernel", source.T
        else:
            collection, name, expected = "params", "bias", source
        path = (model, collection, *modules, name)
        np.testing.assert_array_equal(lookup(variables, path), expected, err_msg=key)
        seen.add(path)
    all_leaves = {
        tuple(k.key for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    assert all_leaves == seen
    total = sum(t.numel() for k, t in state.items() if not k.endswith("num_batches_tracked"))
    assert sum(x.size for x in jax.tree.leaves(variables)) == total


def test_layout_mismatch_is_reported(release_files):
    _, state = release_files
    arrays = {k: v.numpy() for k, v in state.items()}
    del arrays["mixed_4c.conv_b2_b.bn2.running_var"]
    with pytest.raises(ValueError, match="missing"):
        convert_state_dict(arrays)
    arrays = {k: v.numpy() for k, v in state.items()}
    arrays["mixed_4c.conv_b2_b.conv2.weight"] = np.zeros((64, 64, 3, 3, 1), np.float32)
    with pytest.raises(ValueError, match="wrong shape"):
        convert_state_dict(arrays)


def test_x64_mode_loads_float32(release_files, imported):
    folder, _ = release_files
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        _, variables = load_release(folder / "s3d_howto100m.pth", folder / "s3d_dict.npy")
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
    jax.tree.map(np.testing.assert_array_equal, variables, imported[2])


def test_training_checkpoint_loads(release_files, imported, tmp_path):
    """As the release's training script saves it, from a DataParallel model.

    The optimizer and scheduler entries are what torch 2.x's Adam and LambdaLR
    return after one step, written out: building them imports triton, which
    crashes a process that has loaded TensorFlow.
    """
    folder, state = release_files
    optimizer = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.full((3,), 0.1),
                      "exp_avg_sq": torch.full((3,), 1e-3)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "maximize": False, "foreach": None,
                          "capturable": False, "differentiable": False, "fused": None,
                          "decoupled_weight_decay": False, "initial_lr": 1e-3, "params": [0]}],
    }
    scheduler = {"base_lrs": [1e-3], "last_epoch": 1, "_step_count": 2, "_is_initial": False,
                 "_get_lr_called_within_step": False, "_last_lr": [1e-3], "lr_lambdas": [None]}
    path = tmp_path / "epoch0003.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": optimizer, "scheduler": scheduler}, path)
    _, variables = load_release(path, folder / "s3d_dict.npy")
    jax.tree.map(np.testing.assert_array_equal, variables, imported[2])


@pytest.mark.parametrize("content, got", [
    ({"epoch": 3, "model": {}}, "got a dict of 2 entries, 2 not str -> tensor ('epoch': int, "
                                "'model': dict)"),
    ([torch.zeros(2)], "got a list"),
    ({"epoch": 3, "state_dict": {"fc.bias": torch.zeros(2), "step": 7}},
     "got a checkpoint whose state_dict is a dict of 2 entries, 1 not str -> tensor ('step': int)"),
], ids=["no_state_dict", "list", "bad_state_dict"])
def test_unrecognised_checkpoint_is_reported(release_files, tmp_path, content, got):
    folder, _ = release_files
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(ValueError) as error:
        load_release(path, folder / "s3d_dict.npy")
    assert str(error.value).startswith(f"{path}: ") and str(error.value).endswith(got)


# --------------------------------------------------- reference forward, torch ops


def t_bn(x, sd, prefix):
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def t_unit(x, sd, prefix, padding=0):
    return F.relu(
        t_bn(F.conv3d(x, sd[f"{prefix}.conv1.weight"], padding=padding), sd, f"{prefix}.bn1")
    )


def t_separable(x, sd, prefix):
    x = F.relu(
        t_bn(F.conv3d(x, sd[f"{prefix}.conv1.weight"], padding=(0, 1, 1)), sd, f"{prefix}.bn1")
    )
    return F.relu(
        t_bn(F.conv3d(x, sd[f"{prefix}.conv2.weight"], padding=(1, 0, 0)), sd, f"{prefix}.bn2")
    )


def t_gate(x, sd, prefix):
    weights = torch.sigmoid(
        F.linear(x.mean((2, 3, 4)), sd[f"{prefix}.fc.weight"], sd[f"{prefix}.fc.bias"])
    )
    return x * weights[:, :, None, None, None]


def t_release_pool(x, kernel, stride):
    """The release's pool: zero pad (k - s) // 2 before, the rest after, ceil mode."""
    pads = []
    for k, s in zip(reversed(kernel), reversed(stride)):
        along = max(k - s, 0)
        pads += [along // 2, along - along // 2]
    return F.max_pool3d(F.pad(x, pads), kernel, stride, ceil_mode=True)


def t_block(x, sd, name):
    branches = [
        t_unit(x, sd, f"{name}.conv_b0"),
        t_separable(t_unit(x, sd, f"{name}.conv_b1_a"), sd, f"{name}.conv_b1_b"),
        t_separable(t_unit(x, sd, f"{name}.conv_b2_a"), sd, f"{name}.conv_b2_b"),
        t_unit(F.max_pool3d(x, 3, 1, 1), sd, f"{name}.conv_b3_b"),
    ]
    return torch.cat([t_gate(b, sd, f"{name}.gating_b{i}") for i, b in enumerate(branches)], 1)


def t_video(video, sd):
    b, c, t, h, w = video.shape
    x = video.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
    x = x.reshape(b, 8 * c, t // 2, h // 2, w // 2)
    x = t_unit(x, sd, "conv1", padding=(1, 2, 2))[:, :, 1:, 1:, 1:]
    x = t_release_pool(x, (1, 3, 3), (1, 2, 2))
    x = t_gate(t_separable(t_unit(x, sd, "conv_2b"), sd, "conv_2c"), sd, "gating")
    x = t_release_pool(x, (1, 3, 3), (1, 2, 2))
    for name in BLOCKS:
        if name == "mixed_4b":
            x = t_release_pool(x, (3, 3, 3), (2, 2, 2))
        elif name == "mixed_5b":
            x = t_release_pool(x, (2, 2, 2), (2, 2, 2))
        x = t_block(x, sd, name)
    pooled = x.mean((2, 3, 4))
    return pooled, F.linear(pooled, sd["fc.weight"], sd["fc.bias"])


def t_text(ids, sd):
    x = F.embedding(ids, sd["text_module.word_embd.weight"])
    x = F.relu(F.linear(x, sd["text_module.fc1.weight"], sd["text_module.fc1.bias"]))
    return F.linear(x.max(dim=1)[0], sd["text_module.fc2.weight"], sd["text_module.fc2.bias"])


@pytest.fixture(scope="module")
def clips():
    """Two 8×40×40 clips: 40 → 20 → 10 → 5, so maxpool_4a sees an odd size."""
    return np.random.default_rng(0).random((2, 8, 40, 40, 3), np.float32)


def test_video_forward_matches_torch_reference(imported, release_files, clips):
    state, _, variables = imported
    with torch.no_grad():
        mixed_5c, embedding = t_video(torch.from_numpy(clips).permute(0, 4, 1, 2, 3), state)
    # Through the public API: the model vtlearn.load_milnce_release builds from
    # its config, sharded over the test's 8 devices.
    folder, _ = release_files
    model = vtlearn.load_milnce_release(folder / "s3d_howto100m.pth", folder / "s3d_dict.npy")
    out = model.video_outputs(clips)
    scale = float(np.abs(embedding.numpy()).max())
    np.testing.assert_allclose(
        out["features"], mixed_5c.numpy(), rtol=1e-3, atol=1e-3 * float(mixed_5c.abs().max())
    )
    np.testing.assert_allclose(out["embedding"], embedding.numpy(), rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(model.embed_video((clips * 255).round().astype(np.uint8)),
                               model.embed_video(np.round(clips * 255) / 255), rtol=1e-5,
                               atol=1e-6 * scale)


@pytest.mark.parametrize("size", [5, 6, 25])
@pytest.mark.parametrize("window, strides", [((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)),
                                             ((1, 3, 3), (1, 2, 2))])
def test_pytorch_port_pooling_differs_from_tf_only_at_odd_sizes(size, window, strides):
    x = np.random.default_rng(size).random((2, 4, size, size, 3), np.float32)
    expected = t_release_pool(torch.from_numpy(x).permute(0, 4, 1, 2, 3), window, strides)
    expected = expected.permute(0, 2, 3, 4, 1).numpy()
    port = layers.max_pool_3d(jnp.asarray(x), window, strides, padding="pytorch_port")
    tf_same = layers.max_pool_3d(jnp.asarray(x), window, strides, padding="tf_same")
    np.testing.assert_array_equal(port, expected)
    assert np.array_equal(tf_same, expected) == (size % 2 == 0 or window == (2, 2, 2))


def test_text_forward_matches_torch_reference(imported, release_files):
    state, vocab, variables = imported
    ids = np.stack(
        [
            vocab.encode("Cut the tomato!", 16),
            vocab.encode("open door", 16),
            vocab.encode("nothing known", 16),
        ]
    )
    assert ids[2].sum() == 0
    with torch.no_grad():
        expected = t_text(torch.from_numpy(ids).long(), state).numpy()
    _, text_model = release_models(ROWS)
    assert text_model.frozen_param_paths() == (("word_embd", "embedding"),)
    np.testing.assert_allclose(
        text_model.apply(variables["text"], ids), expected, rtol=1e-4, atol=1e-5
    )
    # The public API tokenises raw text as the release does.
    folder, _ = release_files
    model = vtlearn.load_milnce_release(folder / "s3d_howto100m.pth", folder / "s3d_dict.npy")
    np.testing.assert_allclose(
        model.embed_text(["Cut the tomato!", "open door", "nothing known"]), expected,
        rtol=1e-4, atol=1e-5)


def test_object_array_word_list_loads_without_arbitrary_pickle(tmp_path):
    path = tmp_path / "dict.npy"
    np.save(path, np.array(WORDS, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        np.load(path, allow_pickle=False)
    assert load_word_list(path) == WORDS
    unsafe = tmp_path / "unsafe.npy"
    np.save(unsafe, np.array([fractions.Fraction(1, 3), "a"], dtype=object), allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_word_list(unsafe)


CRAFT_WORD_LIST = """
import pickle, sys
import numpy as np

POINTER = b"A" * 8  # 0x4141414141414141: memory the file chooses


class ObjectFromBytes:  # NumPy's object scalar built from raw bytes: a pointer
    def __reduce__(self):
        return (np.core.multiarray.scalar, (np.dtype(object), POINTER))


class ArrayOverBytes:  # NumPy's object-array pickle with raw bytes as its data
    def __reduce__(self):
        return (np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (1,), np.dtype(object), False, POINTER))


payload = {"scalar": np.array([ObjectFromBytes()], dtype=object),
           "array": ArrayOverBytes()}[sys.argv[2]]
with open(sys.argv[1], "wb") as f:
    np.lib.format.write_array_header_1_0(
        f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    pickle.dump(payload, f, protocol=3)
"""


@pytest.mark.parametrize("craft, refusal", [
    ("scalar", "refusing to load numpy.*multiarray.scalar"),
    ("array", "refusing a word list whose array data is not a list of str"),
])
def test_a_word_list_pointing_numpy_at_raw_memory_is_refused(tmp_path, craft, refusal):
    import subprocess
    import sys

    path = tmp_path / "crafted.npy"
    subprocess.run([sys.executable, "-c", CRAFT_WORD_LIST, str(path), craft], check=True)
    # In a subprocess: a loader that lets NumPy build the object hands it a
    # pointer the file chose, and using it can kill the process (NumPy 2.4
    # itself refuses both crafts with a TypeError; the loader must not get
    # that far on any NumPy).
    load = ("import sys; from vtlearn.models.milnce_release import load_word_list; "
            "print(load_word_list(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", load, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert re.search(f"UnpicklingError: {refusal}", done.stderr), done.stderr[-2000:]


def test_release_vocabulary_keeps_ids_of_unreachable_words():
    with pytest.warns(UserWarning, match="no embedding row"):
        vocab = release_vocabulary(["cut", "Tomato", "cut", "door", "extra"], rows=5)
    assert len(vocab) == 5
    assert vocab.words == ("<unreachable:1>", "<unreachable:2>", "cut", "door")
    assert list(vocab.encode("cut tomato door", 4)) == [3, 4, 0, 0]


def test_a_run_can_start_from_the_release(release_files, imported):
    """config.model_init=s3d_howto100m.pth puts every release tensor into a new run's state."""
    import pathlib

    from vtlearn import api, sharding, train
    from vtlearn.config_defaults import load_config

    folder, _ = release_files
    _, _, variables = imported
    config = load_config(f"{pathlib.Path(__file__).parents[2]}/configs/milnce_s3d.py:tiny")
    config.data.update(lab="", vocab_path=str(folder / "s3d_dict.npy"))
    config.model.video.pool_padding = "pytorch_port"
    config.model.text.update(pad_in_max=True, freeze_word_embeddings=True)
    config.model_init = str(folder / "s3d_howto100m.pth")
    trainer = train.Trainer(config, sharding.make_mesh())
    state = trainer.init_state(api.load_pretrained(config.model_init, config, trainer.method))
    params, model_state = jax.device_get((state.params, state.model_state))
    jax.tree.map(np.testing.assert_array_equal, params["video"],
                 jax.device_get(variables["video"]["params"]))
    jax.tree.map(np.testing.assert_array_equal, model_state["video"],
                 jax.device_get(variables["video"]["batch_stats"]))
    jax.tree.map(np.testing.assert_array_equal, params["text"],
                 jax.device_get(variables["text"]["params"]))


def test_the_evaluate_command_runs_a_benchmark_on_the_release_weights(release_files, tmp_path):
    """`vtlearn.evaluate --published=milnce_release:...` on MSR-VTT files (the tiny lab's export),
    at 8 frames of 40x40 (`--set data.*`) so that S3D-G stays cheap on a CPU."""
    import subprocess
    import sys

    from vtlearn.data import lab, lab_exports

    data_dir = lab_exports.export(lab.lab_config("tiny"), "msrvtt", tmp_path / "msrvtt")
    folder, _ = release_files
    command = [sys.executable, "-m", "vtlearn.evaluate",
               f"--published=milnce_release:{folder / 's3d_howto100m.pth'},"
               f"{folder / 's3d_dict.npy'}",
               "--evals=msrvtt", f"--set=evals.msrvtt.data_dir={data_dir}",
               f"--set=evals.msrvtt.cache_dir={tmp_path / 'cache'}",
               "--set=evals.msrvtt.num_clips=1", "--set=data.num_frames=8",
               "--set=data.eval_crop_size=40", "--set=eval_batch_size=8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          cwd=pathlib.Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split("\t") for line in done.stdout.splitlines() if "\t" in line)
    pairs = len((data_dir / "MSRVTT_JSFUSION_test.csv").read_text().splitlines()) - 1
    assert float(printed["msrvtt/pairs"]) == pairs == float(printed["msrvtt/pairs_embedded"])
    assert 0 <= float(printed["msrvtt/t2v/R@1"]) <= 100
    bare = subprocess.run(command[:4], capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0 and "needs --evals" in bare.stderr


def test_published_weights_are_looked_up_by_name():
    from vtlearn.methods import load_published

    with pytest.raises(ValueError, match=r"no published weights 'nope'; known: "
                                         r"\['milnce_release'\]"):
        load_published("nope", "a.pth")
