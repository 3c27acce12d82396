"""ResDAVEnet (Harwath et al. 2018/2020), the audio CNN MCN's release trains on log-mel input.

Layout, input log-mel [N, F, M] (F frames of M = 40 mel bands):

  conv over all M bands (the release's 2-D kernel M×1, 128 channels) + BN + ReLU
  4 stages × 2 residual blocks, widths 128, 256, 512, 1024: each block is
    conv(1×9) + BN + ReLU + conv(1×9) + BN, plus the input (through a 1×1
    conv + BN where the shape changes), then ReLU; the first block of each
    stage has stride 2 in time (16× overall)
  -> [N, ceil(F / 16), 1024]

Convolutions run over time only (1-D, frames × channels): the M×1 kernel
over a one-channel image is a 1-D convolution of width 1 over M input
channels. Weights start He-normal, as in the release. `pool` averages over
time: over every frame (the release's training, padding included) or, given
the valid frame counts, over the first max(1, frames // 16) outputs (its
evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

WIDTHS = (128, 256, 512, 1024)
TIME_STRIDE = 2 ** len(WIDTHS)


class _Block(nn.Module):
    width: int
    stride: int
    kernel: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = lambda w, k, s, name: nn.Conv(  # noqa: E731
            w, (k,), strides=(s,), padding=[(k // 2, k // 2)], use_bias=False,
            kernel_init=nn.initializers.he_normal(), name=name)
        norm = lambda name: nn.BatchNorm(use_running_average=not train, name=name)  # noqa: E731
        y = nn.relu(norm("bn1")(conv(self.width, self.kernel, self.stride, "conv1")(x)))
        y = norm("bn2")(conv(self.width, self.kernel, 1, "conv2")(y))
        if self.stride != 1 or x.shape[-1] != self.width:
            x = norm("bn_down")(conv(self.width, 1, self.stride, "down")(x))
        return nn.relu(x + y)


class ResDavenet(nn.Module):
    """Log-mel [N, F, M] -> [N, ceil(F / 16), widths[-1]] (see the module docstring)."""

    widths: Sequence[int] = WIDTHS
    blocks_per_stage: int = 2
    kernel: int = 9

    @nn.compact
    def __call__(self, spectrogram: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(self.widths[0], (1,), use_bias=False,
                    kernel_init=nn.initializers.he_normal(), name="conv_bands")(spectrogram)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn_bands")(x))
        for s, width in enumerate(self.widths):
            for b in range(self.blocks_per_stage):
                x = _Block(width, 2 if b == 0 else 1, self.kernel, name=f"stage{s}_block{b}")(
                    x, train)
        return x


def pool(outputs: jax.Array, frames: jax.Array | None = None) -> jax.Array:
    """Mean over time of `ResDavenet` outputs [N, F', C] -> [N, C].

    Args:
      outputs: the network's outputs.
      frames: int [N] valid input frames (None: average every output step).
    """
    if frames is None:
        return jnp.mean(outputs, axis=1)
    keep = jnp.clip(frames // TIME_STRIDE, 1, outputs.shape[1])
    mask = jnp.arange(outputs.shape[1])[None] < keep[:, None]
    return jnp.sum(jnp.where(mask[..., None], outputs, 0.0), 1) / keep[:, None]


def from_torch(state_dict: Mapping[str, np.ndarray], widths: Sequence[int] = WIDTHS,
               blocks_per_stage: int = 2) -> dict[str, dict]:
    """`ResDavenet` variables {"params", "batch_stats"} from a PyTorch ResDAVEnet state dict.

    Reads the layout of DAVEnet's `ResDavenet` as MCN's release builds it
    (`model_davenet.py`): `conv1` [W0, 1, M, 1] + `bn1`, then `layer{s}.{b}`
    blocks of `conv1`/`bn1`/`conv2`/`bn2` [W, W_in, 1, K] and, in each
    stage's first block, `downsample.0` [W, W_in, 1, 1] + `downsample.1`
    (BN). Its `batchnorm1`, which its forward never uses, is ignored. The
    network may sit under a prefix (e.g. "DAVEnet." in a whole MCN
    checkpoint): the one key ending in a 4-D stem `conv1.weight` fixes it.

    Raises:
      ValueError: naming the missing or misshapen tensors.
    """
    stems = [k[:-len("conv1.weight")] for k, v in state_dict.items()
             if k.endswith("conv1.weight") and "layer" not in k and np.ndim(v) == 4
             and np.shape(v)[1] == 1 and np.shape(v)[3] == 1]
    if len(stems) != 1:
        raise ValueError(f"expected one ResDAVEnet stem (a [C, 1, mel, 1] 'conv1.weight'), "
                         f"found {len(stems)}: {stems}")
    prefix = stems[0]

    def stem(w):  # [W0, 1, M, 1] -> [1, M, W0]
        return w[:, 0, :, 0].T[None]

    def over_time(w):  # [W, W_in, 1, K] -> [K, W_in, W]
        return w[:, :, 0].transpose(2, 1, 0)

    layout = [(("conv_bands",), "conv1", stem), (("bn_bands",), "bn1", None)]
    for s in range(len(widths)):
        for b in range(blocks_per_stage):
            ours, theirs = f"stage{s}_block{b}", f"layer{s + 1}.{b}"
            for i in (1, 2):
                layout += [((ours, f"conv{i}"), f"{theirs}.conv{i}", over_time),
                           ((ours, f"bn{i}"), f"{theirs}.bn{i}", None)]
            if b == 0:
                layout += [((ours, "down"), f"{theirs}.downsample.0", over_time),
                           ((ours, "bn_down"), f"{theirs}.downsample.1", None)]
    params, stats, missing = {}, {}, []
    for path, key, to_kernel in layout:
        names = ("weight",) if to_kernel else ("weight", "bias", "running_mean", "running_var")
        absent = [f"{prefix}{key}.{n}" for n in names if f"{prefix}{key}.{n}" not in state_dict]
        missing += absent
        if absent:
            continue
        t = {n: np.asarray(state_dict[f"{prefix}{key}.{n}"], np.float32) for n in names}
        if to_kernel:
            _put(params, path, {"kernel": to_kernel(t["weight"])})
        else:
            _put(params, path, {"scale": t["weight"], "bias": t["bias"]})
            _put(stats, path, {"mean": t["running_mean"], "var": t["running_var"]})
    if missing:
        raise ValueError(f"the ResDAVEnet state dict lacks {len(missing)} tensor(s) for "
                         f"widths {tuple(widths)}: {', '.join(missing[:6])}"
                         f"{', ...' if len(missing) > 6 else ''}")
    return {"params": params, "batch_stats": stats}


def _put(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value
