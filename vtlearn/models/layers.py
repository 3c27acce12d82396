"""Building blocks shared by the S3D-G and I3D video backbones.

Everything here works on channels-last video, `[B, T, H, W, C]`.

Padding follows TensorFlow's "SAME" rule with explicit, possibly asymmetric
pads (`tf_same_padding`), because both MIL-NCE backbones were trained in
TensorFlow. Max-pools can instead follow the rule of the public PyTorch port of
the MIL-NCE release (`pool_padding="pytorch_port"`), which differs from
TensorFlow only when a pooled size is not divisible by the stride (e.g. the
25×25 map before `maxpool_4a` of a 200×200 clip).

Parameter layout (what `milnce_release.py` maps the PyTorch release onto):
a `ConvBNReLU` unit has `conv1/kernel` `[kt, kh, kw, in, out]` and `bn1`; a
`SeparableConvBNReLU` unit has `conv1/kernel` `[1, kh, kw, in, out]`, `bn1`,
`conv2/kernel` `[kt, 1, 1, out, out]`, `bn2`; a batch norm has params
`scale`, `bias` and batch_stats `mean`, `var`; a `SelfGating` has `fc/kernel`,
`fc/bias`. Convolutions have no bias. The layout does not depend on how a
convolution is lowered (`conv_lowering`).
"""

from __future__ import annotations

import functools
import math
from typing import Literal, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Triple = tuple[int, int, int]
PoolPadding = Literal["tf_same", "pytorch_port"]
ConvLowering = Literal["factorized", "xla_3d"]

_DIMENSIONS_3D = ("NDHWC", "DHWIO", "NDHWC")
_DIMENSIONS_2D = ("NHWC", "HWIO", "NHWC")


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" pads `(before, after)` for one axis.

    The output has `ceil(size / stride)` positions; the extra pad goes after.
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pytorch_port_pool_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Pads `(before, after)` reproducing the public PyTorch MIL-NCE S3D pools.

    That port pads `(kernel - stride) // 2` before (independent of `size`) and
    pools with `ceil_mode=True`, which gives `ceil(size / stride)` outputs like
    "SAME" but shifts the windows when `size % stride != 0`.
    """
    before = max(kernel - stride, 0) // 2
    out = math.ceil(size / stride)
    return before, max((out - 1) * stride + kernel - size - before, 0)


def max_pool_3d(x: jax.Array, window: Triple, strides: Triple,
                padding: PoolPadding = "tf_same") -> jax.Array:
    """Max-pool over (T, H, W) with explicit pads (padded cells never win).

    Computed as three 1-D max-pools, each a running `maximum` of strided
    slices: the same values as one 3-D `reduce_window`, but its gradient is
    several times faster on XLA:CPU (see benchmarks/s3d_train_step.py
    --micro). Exact ties share the gradient evenly.

    Args:
        x: [B, T, H, W, C].
        window: (kt, kh, kw).
        strides: (st, sh, sw).
        padding: "tf_same" or "pytorch_port" (see module docstring).

    Returns:
        [B, ceil(T/st), ceil(H/sh), ceil(W/sw), C].
    """
    pad_rule = tf_same_padding if padding == "tf_same" else pytorch_port_pool_padding
    for axis, kernel, stride in zip((1, 2, 3), window, strides):
        if kernel == stride == 1:
            continue
        size = x.shape[axis]
        pads = [(0, 0)] * x.ndim
        pads[axis] = pad_rule(size, kernel, stride)
        padded = jnp.pad(x, pads, constant_values=-jnp.inf)
        span = (math.ceil(size / stride) - 1) * stride + 1
        x = functools.reduce(jnp.maximum, [
            lax.slice_in_dim(padded, i, i + span, stride, axis) for i in range(kernel)])
    return x


def _conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
            pads: tuple[tuple[int, int], ...]) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DIMENSIONS_2D)


def _patches(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             pads: tuple[tuple[int, int], ...]) -> jax.Array:
    """im2col: [N, H, W, C] -> [N, H', W', kh·kw·C], ordered (i, j, c)."""
    padded = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    rows = (padded.shape[1] - window[0]) // strides[0] * strides[0] + 1
    cols = (padded.shape[2] - window[1]) // strides[1] * strides[1] + 1
    return jnp.concatenate([
        padded[:, i:i + rows:strides[0], j:j + cols:strides[1]]
        for i in range(window[0]) for j in range(window[1])], axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d_matmul_grad(x, kernel, strides, pads):
    """A 2-D convolution whose kernel gradient is one im2col matmul.

    Forward and input gradient are XLA's convolutions; XLA:CPU's own
    kernel-gradient convolution is several times slower than the matmul.
    """
    return _conv2d(x, kernel, strides, pads)


def _conv2d_matmul_grad_fwd(x, kernel, strides, pads):
    return _conv2d(x, kernel, strides, pads), (x, kernel)


def _conv2d_matmul_grad_bwd(strides, pads, residuals, dy):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda inputs: _conv2d(inputs, kernel, strides, pads), x)
    patches = _patches(x, kernel.shape[:2], strides, pads)
    dk = patches.reshape(-1, patches.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
    return input_vjp(dy)[0], dk.reshape(kernel.shape)


_conv2d_matmul_grad.defvjp(_conv2d_matmul_grad_fwd, _conv2d_matmul_grad_bwd)


def _frame_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                pads: list[tuple[int, int]]) -> jax.Array:
    """A 2-D conv of every frame: [B, T, H, W, Cin], [kh, kw, Cin, Cout]."""
    batch, steps = x.shape[:2]
    if kernel.shape[:2] == (1, 1) and strides == (1, 1):
        y = x.reshape(-1, x.shape[-1]) @ kernel[0, 0]
        return y.reshape(*x.shape[:-1], -1)
    y = _conv2d_matmul_grad(x.reshape(batch * steps, *x.shape[2:]), kernel, strides, tuple(pads))
    return y.reshape(batch, steps, *y.shape[1:])


def conv3d_same(x: jax.Array, kernel: jax.Array, strides: Triple = (1, 1, 1),
                lowering: ConvLowering = "factorized") -> jax.Array:
    """3-D convolution with TensorFlow "SAME" padding and no bias.

    Args:
        x: [B, T, H, W, Cin].
        kernel: [kt, kh, kw, Cin, Cout].
        strides: (st, sh, sw).
        lowering: "xla_3d" emits one XLA 3-D convolution. "factorized" writes
            it as a sum over the kt temporal taps of 2-D convolutions of the
            (strided) time-shifted frames, batch and time merged; 1×1 taps
            become plain matmuls and kernel gradients are im2col matmuls. Same
            result, several times faster to train on XLA:CPU (see
            benchmarks/s3d_train_step.py --micro).

    Returns:
        [B, ceil(T/st), ceil(H/sh), ceil(W/sw), Cout].
    """
    pads = [tf_same_padding(n, k, s) for n, k, s in zip(x.shape[1:4], kernel.shape[:3], strides)]
    if lowering == "xla_3d":
        return lax.conv_general_dilated(x, kernel, strides, pads,
                                        dimension_numbers=_DIMENSIONS_3D)
    taps, stride = kernel.shape[0], strides[0]
    if pads[0] != (0, 0):
        x = jnp.pad(x, [(0, 0), pads[0], (0, 0), (0, 0), (0, 0)])
    span = (x.shape[1] - taps) // stride * stride + 1
    return functools.reduce(jnp.add, [
        _frame_conv(lax.slice_in_dim(x, i, i + span, stride, axis=1), kernel[i], strides[1:],
                    pads[1:])
        for i in range(taps)])


class Conv3D(nn.Module):
    """Bias-free 3-D convolution with TensorFlow "SAME" padding.

    Attributes:
        features: output channels.
        kernel_size: (kt, kh, kw).
        strides: (st, sh, sw).
        lowering: see `conv3d_same`; does not change the parameters.
    """

    features: int
    kernel_size: Triple
    strides: Triple = (1, 1, 1)
    lowering: ConvLowering = "factorized"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, T, H, W, Cin] -> [B, T', H', W', features]."""
        kernel = self.param("kernel", nn.initializers.he_normal(),
                            (*self.kernel_size, x.shape[-1], self.features))
        return conv3d_same(x, kernel, self.strides, self.lowering)


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the last, optionally per group.

    There is no `axis_name`: under `jax.jit` with a batch sharded over a device
    mesh, the mean over the batch axis is already the global (cross-replica)
    mean, so statistics are synchronised by default. To reproduce per-device
    statistics instead (as in TF-slim on TPU), set `group_size`: the batch
    `[B, ...]` is viewed as `[B // group_size, group_size, ...]` and each
    group of `group_size` consecutive examples is normalised with its own
    moments. Keep the groups aligned with the batch sharding (group_size =
    per-device batch) so no communication is needed. The running averages are
    updated with the mean over groups of the group moments.

    Attributes:
        momentum: running average decay (Flax convention: new = momentum·old +
            (1 - momentum)·batch; PyTorch's momentum 0.1 is 0.9 here).
        epsilon: added to the variance (1e-5 in the public MIL-NCE release,
            1e-3 in TF-slim).
        group_size: examples per statistics group; None = the whole batch.
    """

    momentum: float = 0.9
    epsilon: float = 1e-3
    group_size: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Normalises `x` [B, ..., C] with batch (train) or running statistics."""
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (channels,))
        if not train:
            inv = scale * lax.rsqrt(running_var.value + self.epsilon)
            return x * inv + (bias - running_mean.value * inv)
        group = self.group_size or x.shape[0]
        if x.shape[0] % group:
            raise ValueError(f"batch {x.shape[0]} is not a multiple of group_size {group}")
        grouped = x.reshape(x.shape[0] // group, group, *x.shape[1:])
        axes = tuple(range(1, grouped.ndim - 1))
        mean = grouped.mean(axes, keepdims=True)
        var = jnp.maximum(jnp.square(grouped).mean(axes, keepdims=True) - jnp.square(mean), 0.0)
        if not self.is_initializing():
            for running, batch in ((running_mean, mean), (running_var, var)):
                batch = batch.reshape(-1, channels).mean(0)
                running.value = self.momentum * running.value + (1 - self.momentum) * batch
        inv = scale * lax.rsqrt(var + self.epsilon)
        return (grouped * inv + (bias - mean * inv)).reshape(x.shape)


class UnitFactory(Protocol):
    """Makes a conv-BN-ReLU unit: `unit(features, kernel_size, strides=..., name=...)`."""

    def __call__(self, features: int, kernel_size: Triple, strides: Triple = (1, 1, 1),
                 *, name: str) -> nn.Module: ...


class ConvBNReLU(nn.Module):
    """Conv (no bias) → BatchNorm → ReLU. Params: `conv1`, `bn1`.

    Attributes:
        features: output channels.
        kernel_size: (kt, kh, kw).
        strides: (st, sh, sw).
        bn_epsilon, bn_momentum, bn_group_size: see `BatchNorm`.
        conv_lowering: see `conv3d_same`.
    """

    features: int
    kernel_size: Triple
    strides: Triple = (1, 1, 1)
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.9
    bn_group_size: int | None = None
    conv_lowering: ConvLowering = "factorized"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """[B, T, H, W, Cin] -> [B, T', H', W', features]."""
        x = Conv3D(self.features, self.kernel_size, self.strides, self.conv_lowering,
                   name="conv1")(x)
        x = BatchNorm(self.bn_momentum, self.bn_epsilon, self.bn_group_size, name="bn1")(x, train)
        return nn.relu(x)


class SeparableConvBNReLU(nn.Module):
    """S3D's factorised unit: 1×kh×kw conv → BN → ReLU → kt×1×1 conv → BN → ReLU.

    Params: `conv1` `[1, kh, kw, in, out]`, `bn1`, `conv2` `[kt, 1, 1, out, out]`,
    `bn2`. The spatial stride goes to `conv1`, the temporal stride to `conv2`.

    Attributes: as `ConvBNReLU`.
    """

    features: int
    kernel_size: Triple
    strides: Triple = (1, 1, 1)
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.9
    bn_group_size: int | None = None
    conv_lowering: ConvLowering = "factorized"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """[B, T, H, W, Cin] -> [B, T', H', W', features]."""
        kt, kh, kw = self.kernel_size
        st, sh, sw = self.strides
        bn = functools.partial(BatchNorm, self.bn_momentum, self.bn_epsilon, self.bn_group_size)
        x = Conv3D(self.features, (1, kh, kw), (1, sh, sw), self.conv_lowering, name="conv1")(x)
        x = nn.relu(bn(name="bn1")(x, train))
        x = Conv3D(self.features, (kt, 1, 1), (st, 1, 1), self.conv_lowering, name="conv2")(x)
        return nn.relu(bn(name="bn2")(x, train))


def make_unit(features: int, kernel_size: Triple, strides: Triple = (1, 1, 1), *,
              name: str, separable: bool, **unit_kwargs) -> nn.Module:
    """A unit; separable (S3D) when asked and the kernel spans time and space.

    Bind `separable` and the BN/lowering keywords with `functools.partial` to
    get a `UnitFactory`.
    """
    spans_time_and_space = kernel_size[0] > 1 and kernel_size[1:] != (1, 1)
    cls = SeparableConvBNReLU if separable and spans_time_and_space else ConvBNReLU
    return cls(features, kernel_size, strides, name=name, **unit_kwargs)


class SelfGating(nn.Module):
    """S3D-G feature gating: `x * sigmoid(W · mean_{t,h,w}(x) + b)`. Params: `fc`."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, T, H, W, C] -> [B, T, H, W, C]."""
        weights = nn.sigmoid(nn.Dense(x.shape[-1], name="fc")(x.mean(axis=(1, 2, 3))))
        return x * weights[:, None, None, None, :]


# Inception-v1 branch widths per block:
# (b0 1×1, b1 1×1, b1 3×3, b2 1×1, b2 3×3, b3 pool→1×1).
INCEPTION_V1_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
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


class InceptionBlock(nn.Module):
    """Four-branch Inception-v1 block with 3-D units, optionally self-gated.

    Branches: `conv_b0` 1×1×1; `conv_b1_a` 1×1×1 → `conv_b1_b` 3×3×3;
    `conv_b2_a` 1×1×1 → `conv_b2_b` 3×3×3; 3×3×3 stride-1 max-pool →
    `conv_b3_b` 1×1×1. With `gating`, `gating_b0..3` gate each branch output.

    Attributes:
        widths: the six widths of `INCEPTION_V1_WIDTHS`.
        unit: makes each conv unit (separable 3×3×3 for S3D, full for I3D).
        gating: S3D-G self-gating on each branch.
    """

    widths: tuple[int, int, int, int, int, int]
    unit: UnitFactory
    gating: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """[B, T, H, W, Cin] -> [B, T, H, W, w0 + w2 + w4 + w5]."""
        w0, w1a, w1b, w2a, w2b, w3 = self.widths
        one, three = (1, 1, 1), (3, 3, 3)
        b1 = self.unit(w1a, one, name="conv_b1_a")(x, train)
        b2 = self.unit(w2a, one, name="conv_b2_a")(x, train)
        branches = [
            self.unit(w0, one, name="conv_b0")(x, train),
            self.unit(w1b, three, name="conv_b1_b")(b1, train),
            self.unit(w2b, three, name="conv_b2_b")(b2, train),
            self.unit(w3, one, name="conv_b3_b")(max_pool_3d(x, three, one), train),
        ]
        if self.gating:
            branches = [SelfGating(name=f"gating_b{i}")(b) for i, b in enumerate(branches)]
        return jnp.concatenate(branches, axis=-1)


def inception_v1_trunk(x: jax.Array, *, unit: UnitFactory, gating: bool,
                       pool_padding: PoolPadding, train: bool) -> jax.Array:
    """The Inception-v1 trunk after the stem conv, up to `mixed_5c`.

    maxpool_2a 1×3×3/(1,2,2) → `conv_2b` 1×1×1 (64) → `conv_2c` 3×3×3 (192)
    [→ `gating`] → maxpool_3a 1×3×3/(1,2,2) → `mixed_3b`, `mixed_3c` →
    maxpool_4a 3×3×3/2 → `mixed_4b`..`mixed_4f` → maxpool_5a 2×2×2/2 →
    `mixed_5b`, `mixed_5c`. Call it inside a compact module's `__call__`: the
    submodules it makes are that module's children under the names above.

    Args:
        x: stem output [B, T, H, W, 64].
        unit: conv unit factory.
        gating: S3D-G gating after `conv_2c` and on every Inception branch.
        pool_padding: see `max_pool_3d`.
        train: batch statistics (True) or running averages (False) in BN.

    Returns:
        mixed_5c map [B, T', H', W', 1024].
    """
    pool = functools.partial(max_pool_3d, padding=pool_padding)
    x = pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(64, (1, 1, 1), name="conv_2b")(x, train)
    x = unit(192, (3, 3, 3), name="conv_2c")(x, train)
    if gating:
        x = SelfGating(name="gating")(x)
    x = pool(x, (1, 3, 3), (1, 2, 2))
    stage_pools = {"mixed_4b": ((3, 3, 3), (2, 2, 2)), "mixed_5b": ((2, 2, 2), (2, 2, 2))}
    for name, widths in INCEPTION_V1_WIDTHS.items():
        if name in stage_pools:
            x = pool(x, *stage_pools[name])
        x = InceptionBlock(widths, unit, gating, name=name)(x, train)
    return x


class InceptionBackbone(nn.Module):
    """Fields and unit factory S3D-G and I3D share (subclasses add the stem).

    Attributes:
        embedding_dim: width of the `video_embedding` Linear; None drops it.
        bn_epsilon: 1e-5 in the public MIL-NCE release, 1e-3 in TF-slim.
        bn_momentum: running-average decay, Flax convention (see `BatchNorm`).
        bn_group_size: per-group (e.g. per-device) batch statistics; None uses
            the whole (global, when sharded under jit) batch.
        pool_padding: "tf_same" or "pytorch_port" (see `max_pool_3d`).
        conv_lowering: "factorized" (faster on CPU, see
            benchmarks/s3d_train_step.py) or "xla_3d"; same parameters.
    """

    embedding_dim: int | None = 512
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.9
    bn_group_size: int | None = None
    pool_padding: PoolPadding = "tf_same"
    conv_lowering: ConvLowering = "factorized"

    def unit_factory(self, separable: bool) -> UnitFactory:
        """`make_unit` with this backbone's BatchNorm and lowering settings."""
        return functools.partial(
            make_unit, separable=separable, bn_epsilon=self.bn_epsilon,
            bn_momentum=self.bn_momentum, bn_group_size=self.bn_group_size,
            conv_lowering=self.conv_lowering)


def video_endpoints(mixed_5c_map: jax.Array, embedding_dim: int | None) -> dict[str, jax.Array]:
    """Global average pool and the joint-space Linear (`fc`, Table 1 left).

    Call inside a compact module. Returns `mixed_5c_map` [B, T', H', W', 1024],
    `mixed_5c` [B, 1024] and, unless `embedding_dim` is None,
    `video_embedding` [B, embedding_dim].
    """
    pooled = mixed_5c_map.mean(axis=(1, 2, 3))
    out = {"mixed_5c_map": mixed_5c_map, "mixed_5c": pooled}
    if embedding_dim is not None:
        out["video_embedding"] = nn.Dense(embedding_dim, name="fc")(pooled)
    return out


def check_video(video: jax.Array) -> None:
    """Raises ValueError unless `video` is [B, T, H, W, 3]."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"expected video [B, T, H, W, 3], got {video.shape}")


def count_params(tree) -> int:
    """Total number of scalars in a pytree of arrays (or ShapeDtypeStructs)."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))
