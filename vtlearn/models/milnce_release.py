"""Imports the public MIL-NCE S3D text-video release into vtlearn.

The release (PyTorch port of the TF-Hub model `deepmind/mil-nce/s3d/1`) is
two files: `s3d_howto100m.pth`, a state dict, and `s3d_dict.npy`, a 1-D array
of words whose ids are index + 1 (0 = padding). Its conventions, all
reproduced by `release_models`:

- video input [B, T, H, W, 3] in [0, 1], no mean/std normalisation;
- space-to-depth stem (channel order ((dt·2 + dh)·2 + dw)·3 + c), a 2×4×4
  conv, BN epsilon 1e-5, self-gating;
- its max-pools pad as `layers.pytorch_port_pool_padding` (identical to TF
  "SAME" at 224×224; at 200×200 `maxpool_4a` windows shift by one);
- the padding id takes part in the text max-pool (`pad_in_max=True`).

Layout conversion: torch conv weights [out, in, t, h, w] become flax kernels
[t, h, w, in, out]; Linear weights [out, in] become [in, out]; BN
weight/bias/running_mean/running_var become params scale/bias and
batch_stats mean/var (`num_batches_tracked` is dropped). Module names are the
same on both sides (`mixed_4b.conv_b1_b.conv2` ↔ `mixed_4b/conv_b1_b/conv2`).

Besides the release's flat state dict, `load_release` reads a checkpoint of
the release's training script, `{"epoch", "state_dict", "optimizer",
"scheduler"}`, whose state dict comes from `nn.DataParallel` (every key
prefixed `module.`).

Nothing pickled is executed: weights load with `torch.load(...,
weights_only=True)` (optional extra `milnce_release`: torch), the word list
with `np.load(..., allow_pickle=False)`, or, if it was saved as an object
array, with an unpickler that reads its list of str through stand-ins for
NumPy's array reconstructors (`load_word_list`).
"""

from __future__ import annotations

import functools
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vtlearn import fs
from vtlearn.data.text import Vocabulary
from vtlearn.models.s3d import S3DG
from vtlearn.models.layers import PoolPadding
from vtlearn.models.text import TextEncoder
from vtlearn.models.torch_weights import read_state_dict

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def release_models(vocab_size: int, pool_padding: PoolPadding = "pytorch_port"
                   ) -> tuple[S3DG, TextEncoder]:
    """The video and text modules configured like the release.

    Args:
        vocab_size: rows of the release's word table (66,250).
        pool_padding: "pytorch_port" reproduces the .pth model exactly;
            "tf_same" is the TF-Hub original (they differ only when a pooled
            size is odd, e.g. 200×200 input).
    """
    video = S3DG(stem="space_to_depth", gating=True, embedding_dim=512, bn_epsilon=1e-5,
                 pool_padding=pool_padding)
    text = TextEncoder(vocab_size=vocab_size, pad_in_max=True, freeze_word_embeddings=True)
    return video, text


class _WordArray:
    """Stands in for `numpy.ndarray` while a word list is unpickled.

    NumPy pickles an object array as `_reconstruct(ndarray, ...)` followed by
    `__setstate__((version, shape, dtype, fortran, data))`, where `data` is
    the list of its objects. Only a 1-D list of str is accepted: raw bytes
    (which would make NumPy build an array over memory the file chooses) or
    any other object are refused, and no NumPy array is ever reconstructed.
    """

    def __init__(self, *args):
        self.words = None

    def __setstate__(self, state):
        data = state[-1] if isinstance(state, tuple) and state else None
        shape = state[1] if isinstance(state, tuple) and len(state) == 5 else None
        if not (isinstance(data, list) and all(isinstance(w, str) for w in data)):
            raise pickle.UnpicklingError(
                "refusing a word list whose array data is not a list of str "
                f"(got {type(data).__name__})")
        if shape != (len(data),):
            raise pickle.UnpicklingError(f"refusing a word list of shape {shape}")
        self.words = data


class _Ignored:
    """Stands in for `numpy.dtype` (its state does not matter here)."""

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        pass


def _reconstruct(cls, shape, typecode):
    return cls()


_STAND_INS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _WordArray,
    ("numpy", "dtype"): _Ignored,
}


class _WordListUnpickler(pickle.Unpickler):
    """Unpickles NumPy's pickle of a 1-D object array of str, and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _STAND_INS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a word list")
        return _STAND_INS[(module, name)]


def load_word_list(path: str | Path) -> list[str]:
    """Reads a 1-D .npy array of words without running pickled code.

    A string array loads directly. An object array (which needs pickle) is
    read by an unpickler that admits only NumPy's array pickle, with
    stand-ins that keep its list of str and never build a NumPy array: a
    file cannot run code or make NumPy read memory it chooses; anything
    else raises `pickle.UnpicklingError`.
    """
    with fs.open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        _, _, dtype = read_header(f)
        if dtype.hasobject:
            loaded = _WordListUnpickler(f).load()
            if not isinstance(loaded, _WordArray) or loaded.words is None:
                raise pickle.UnpicklingError(f"{path}: not a pickled NumPy word array")
            words = np.asarray(loaded.words, dtype=str)
        else:
            f.seek(0)
            words = np.load(f, allow_pickle=False)
    if words.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D word array, got shape {words.shape}")
    return [str(w) for w in words]


def release_vocabulary(words: Sequence[str], rows: int) -> Vocabulary:
    """The release's word → id mapping as a `Vocabulary` (ids = index + 1).

    The release lowercases text and looks words up exactly, keeping the last
    copy of a repeated word. Entries it can never return (words with capitals,
    earlier copies of repeated words) keep their id as a placeholder
    "<unreachable:ID>" that no tokenised text matches. Words whose id has no
    row in the word table (id >= rows) are dropped with a warning.
    """
    if len(words) >= rows:
        warnings.warn(f"{len(words) - rows + 1} words have no embedding row; dropped")
        words = words[:rows - 1]
    last = {w: i for i, w in enumerate(words)}
    return Vocabulary([w if w == w.lower() and last[w] == i else f"<unreachable:{i + 1}>"
                       for i, w in enumerate(words)])


def _flax_leaf(torch_key: str,
               tensor: np.ndarray) -> tuple[str, tuple[str, ...], np.ndarray] | None:
    """(collection, flax path, array) for one state-dict entry; None to drop."""
    *modules, leaf = torch_key.split(".")
    if leaf == "num_batches_tracked":
        return None
    if modules[-1].startswith("bn") and leaf in _BN_LEAVES:
        collection, name = _BN_LEAVES[leaf]
        return collection, (*modules, name), tensor
    if modules[-1] == "word_embd" and leaf == "weight":
        return "params", (*modules, "embedding"), tensor
    if leaf == "weight" and tensor.ndim == 5:
        return "params", (*modules, "kernel"), tensor.transpose(2, 3, 4, 1, 0)
    if leaf == "weight" and tensor.ndim == 2:
        return "params", (*modules, "kernel"), tensor.T
    if leaf == "bias" and tensor.ndim == 1:
        return "params", (*modules, "bias"), tensor
    raise ValueError(f"unexpected release tensor {torch_key} {tensor.shape}")


def _nest(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(value)
    return tree


def _flatten(tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[int, ...]]:
    if isinstance(tree, Mapping):
        return {p: s for k, v in tree.items() for p, s in _flatten(v, (*prefix, k)).items()}
    return {prefix: tuple(tree.shape)}


def _check_matches(name: str, flat: dict[tuple[str, ...], np.ndarray], expected) -> None:
    """Raises unless `flat` has exactly the paths and shapes of `expected`."""
    want = _flatten(expected)
    got = {p: tuple(v.shape) for p, v in flat.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = sorted(p for p in set(want) & set(got) if want[p] != got[p])
    if missing or extra or wrong:
        wrong_shapes = [(p, got[p], want[p]) for p in wrong[:5]]
        raise ValueError(f"release {name} does not match vtlearn's layout: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, wrong shape {wrong_shapes}")


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       pool_padding: PoolPadding = "pytorch_port") -> dict[str, dict]:
    """Maps a release state dict (as NumPy arrays) onto vtlearn's variables.

    Args:
        state_dict: torch key → array, e.g. `mixed_4b.conv_b1_b.conv2.weight`.
        pool_padding: passed to `release_models` for the layout check.

    Returns:
        `{"video": {"params", "batch_stats"}, "text": {"params"}}` for the
        modules of `release_models`. Raises ValueError if any tensor is missing,
        unexpected or of the wrong shape.
    """
    flat: dict[str, dict[str, dict[tuple[str, ...], np.ndarray]]] = {
        "video": {"params": {}, "batch_stats": {}}, "text": {"params": {}}}
    for key, tensor in state_dict.items():
        leaf = _flax_leaf(key, np.asarray(tensor, np.float32))
        if leaf is None:
            continue
        collection, path, array = leaf
        model, path = ("text", path[1:]) if path[0] == "text_module" else ("video", path)
        flat[model][collection][path] = array
    video, text = release_models(flat["text"]["params"][("word_embd", "embedding")].shape[0],
                                 pool_padding)
    # The conv and BN initialisers make JAX's default float dtype (float64 under
    # jax_enable_x64); a clip of that dtype keeps the traced conv's operands alike.
    # Only shapes are compared: the imported arrays stay float32.
    clip = jax.ShapeDtypeStruct((1, 2, 32, 32, 3), jnp.result_type(float))
    expected = {
        "video": jax.eval_shape(functools.partial(video.init, train=False), jax.random.key(0),
                                clip),
        "text": jax.eval_shape(text.init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, 1), jnp.int32)),
    }
    for model, collections in flat.items():
        for collection, leaves in collections.items():
            _check_matches(f"{model} {collection}", leaves, expected[model][collection])
    return {model: {c: _nest(leaves) for c, leaves in collections.items()}
            for model, collections in flat.items()}


def load_release(weights_path: str | Path, dict_path: str | Path,
                 pool_padding: PoolPadding = "pytorch_port") -> tuple[Vocabulary, dict[str, dict]]:
    """Loads `s3d_howto100m.pth` and `s3d_dict.npy`.

    `weights_path` may also be a checkpoint of the release's training script
    (`{"epoch", "state_dict", ...}`, keys prefixed `module.`).

    Returns:
        The vocabulary (encode text with `vocab.encode(text, 16)`) and the
        variables of `convert_state_dict`; apply them with the modules of
        `release_models(vocab_size)`, vocab_size = rows of the word table, e.g.
        `video.apply(variables["video"], clips, train=False)["video_embedding"]`
        and `text.apply(variables["text"], ids)`.

    Raises:
        ValueError: the .pth holds neither a state dict nor a training
            checkpoint, or its tensors do not match vtlearn's layout.
    """
    variables = convert_state_dict(read_state_dict(weights_path), pool_padding)
    rows = variables["text"]["params"]["word_embd"]["embedding"].shape[0]
    return release_vocabulary(load_word_list(dict_path), rows), variables
