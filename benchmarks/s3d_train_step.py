"""S3D-G train-step throughput: vtlearn (JAX/Flax) vs PyTorch, same run.

One train step = forward + backward + Adam update with batch norm in train
mode, on a batch of 8 clips of 16×112×112 (space-to-depth stem, gating, 512-d
head, mean-squared error to a random target). The PyTorch model below is an
independent implementation of the same architecture (same widths, separable
units, gating, TF "SAME" padding), in PyTorch's default NCDHW layout.

PyTorch runs three ways, the strongest a user would pick last: its default
NCDHW layout; `channels_last_3d` (model and input), the layout of oneDNN's
fast CPU convolutions; and that under `torch.compile`. All use every core.
The contenders are timed in alternating rounds, wall clock and process CPU
time per step; each round's first step of a contender, which meets caches
the other frameworks left, is not timed (`--warm_steps`), since training
runs one framework's steps back to back. The process keeps freed memory
mapped, as the training entry point does (`vtlearn.main.keep_freed_memory`),
for both frameworks. Load from other processes does not hit them alike
(PyTorch slowed 4–7× under load where vtlearn slowed 1.2–2×), so the CPU time other
processes used during the timed rounds is measured (/proc/stat less this
process) and no ratio is printed when it exceeds `QUIET_LOAD_PER_CORE`.
Also printed: the step's FLOP count (XLA cost analysis of the compiled
step), each contender's FLOP/s, and vtlearn's as a fraction of a float32
2048² matmul timed in the same run. `--micro` times S3D's convolutions and
pools one by one, XLA's lowerings beside PyTorch's convolutions in both
layouts: where XLA:CPU loses.

    python benchmarks/s3d_train_step.py                  # the comparison
    python benchmarks/s3d_train_step.py --no_compile     # without torch.compile
    python benchmarks/s3d_train_step.py --micro          # per-op micro-benchmark
    python benchmarks/s3d_train_step.py --lowering xla_3d
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch import nn

from vtlearn import cli
from vtlearn.main import keep_freed_memory
from vtlearn.models import layers
from vtlearn.models.s3d import S3DG


def _timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_s(size: int = 2048) -> float:
    """Measured float32 matmul rate of JAX on this machine."""
    a = jnp.ones((size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    return 2 * size**3 / _timed(lambda: dot(a, a).block_until_ready(), 5)


# ----------------------------------------------------------------------------- JAX


def _numpy_init(model, video):
    """He-normal kernels, unit BN scale/var, zero biases/means, drawn in NumPy.

    (`model.init` would spend minutes compiling XLA random-number kernels on
    this CPU; the values do not matter for throughput.)
    """
    shapes = jax.eval_shape(functools.partial(model.init, train=True), jax.random.key(0), video)
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return jnp.asarray(rng.normal(size=leaf.shape).astype(np.float32)
                               * np.sqrt(2 / np.prod(leaf.shape[:-1])))
        return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


class JaxTrainer:
    """vtlearn's S3D-G with an optax Adam step, jit-compiled."""

    def __init__(self, batch: int, frames: int, size: int, lowering: str):
        self.model = S3DG(conv_lowering=lowering)
        rng = np.random.default_rng(0)
        self.video = jnp.asarray(rng.random((batch, frames, size, size, 3), np.float32))
        self.target = jnp.asarray(rng.normal(size=(batch, 512)).astype(np.float32))
        variables = _numpy_init(self.model, self.video)
        self.params, self.batch_stats = variables["params"], variables["batch_stats"]
        self.optimizer = optax.adam(1e-3)
        self.opt_state = self.optimizer.init(self.params)
        self._step = jax.jit(self._train_step, donate_argnums=(0, 1, 2))
        self.flops = self._count_flops()

    def _train_step(self, params, batch_stats, opt_state, video, target):
        def loss_fn(p):
            out, updates = self.model.apply({"params": p, "batch_stats": batch_stats}, video,
                                            train=True, mutable=["batch_stats"])
            return jnp.mean(jnp.square(out["video_embedding"] - target)), updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    def _count_flops(self) -> float:
        compiled = self._step.lower(self.params, self.batch_stats, self.opt_state,
                                    self.video, self.target).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost["flops"])

    def step(self) -> None:
        self.params, self.batch_stats, self.opt_state, loss = self._step(
            self.params, self.batch_stats, self.opt_state, self.video, self.target)
        loss.block_until_ready()


# ------------------------------------------------------------------------- PyTorch


def _same_pads(sizes, kernel, stride) -> list[int]:
    """F.pad argument (last axis first) for TF "SAME" over (T, H, W)."""
    pads = [layers.tf_same_padding(n, k, s) for n, k, s in zip(sizes, kernel, stride)]
    return [p for pair in reversed(pads) for p in pair]


class TorchUnit(nn.Module):
    """Conv (no bias) + BN + ReLU with TF "SAME" padding, NCDHW."""

    def __init__(self, cin: int, cout: int, kernel, stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.symmetric = stride == (1, 1, 1) and all(k % 2 for k in kernel)
        padding = tuple(k // 2 for k in kernel) if self.symmetric else 0
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x):
        if not self.symmetric:
            x = F.pad(x, _same_pads(x.shape[2:], self.kernel, self.stride))
        return F.relu(self.bn(self.conv(x)))


class TorchSeparableUnit(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(TorchUnit(cin, cout, (1, k, k)), TorchUnit(cout, cout, (k, 1, 1)))


class TorchGating(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3, 4))))[:, :, None, None, None]


def torch_max_pool(x, kernel, stride):
    x = F.pad(x, _same_pads(x.shape[2:], kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class TorchInception(nn.Module):
    def __init__(self, cin: int, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = TorchUnit(cin, w0, (1, 1, 1))
        self.b1 = nn.Sequential(TorchUnit(cin, w1a, (1, 1, 1)), TorchSeparableUnit(w1a, w1b))
        self.b2 = nn.Sequential(TorchUnit(cin, w2a, (1, 1, 1)), TorchSeparableUnit(w2a, w2b))
        self.b3 = TorchUnit(cin, w3, (1, 1, 1))
        self.gates = nn.ModuleList(TorchGating(w) for w in (w0, w1b, w2b, w3))
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x):
        branches = [self.b0(x), self.b1(x), self.b2(x),
                    self.b3(torch_max_pool(x, (3, 3, 3), (1, 1, 1)))]
        return torch.cat([g(b) for g, b in zip(self.gates, branches)], dim=1)


class TorchS3DG(nn.Module):
    """S3D-G with space-to-depth stem and a 512-d head, NCDHW."""

    def __init__(self):
        super().__init__()
        self.conv1 = TorchUnit(24, 64, (2, 4, 4))
        self.conv_2b = TorchUnit(64, 64, (1, 1, 1))
        self.conv_2c = TorchSeparableUnit(64, 192)
        self.gating = TorchGating(192)
        blocks, cin = [], 192
        for widths in layers.INCEPTION_V1_WIDTHS.values():
            blocks.append(TorchInception(cin, widths))
            cin = blocks[-1].out_channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(1024, 512)

    def forward(self, video):
        b, c, t, h, w = video.shape
        x = video.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
        x = x.permute(0, 3, 5, 7, 1, 2, 4, 6).reshape(b, 8 * c, t // 2, h // 2, w // 2)
        x = torch_max_pool(self.conv1(x), (1, 3, 3), (1, 2, 2))
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = torch_max_pool(x, (1, 3, 3), (1, 2, 2))
        for name, block in zip(layers.INCEPTION_V1_WIDTHS, self.blocks):
            if name == "mixed_4b":
                x = torch_max_pool(x, (3, 3, 3), (2, 2, 2))
            elif name == "mixed_5b":
                x = torch_max_pool(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        return self.fc(x.mean((2, 3, 4)))


class TorchTrainer:
    """PyTorch's step: NCDHW, or channels-last (`channels_last_3d`, the layout
    oneDNN's fast CPU convolutions use), optionally under `torch.compile`."""

    def __init__(self, batch: int, frames: int, size: int, channels_last: bool = False,
                 compiled: bool = False):
        torch.manual_seed(0)
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.model = TorchS3DG().train().to(memory_format=layout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.video = torch.rand(batch, 3, frames, size, size).to(memory_format=layout)
        self.target = torch.randn(batch, 512)
        self.forward = torch.compile(self.model) if compiled else self.model

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.forward(self.video), self.target)
        loss.backward()
        self.optimizer.step()


# ------------------------------------------------------------------------ micro


def _reduce_window_max_pool(x, window, strides):
    """Max-pool as one XLA reduce_window (the alternative to layers.max_pool_3d)."""
    pads = [layers.tf_same_padding(n, k, s) for n, k, s in zip(x.shape[1:4], window, strides)]
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1),
                                 [(0, 0), *pads, (0, 0)])


def torch_conv_grad_ms(x_shape, kernel_shape, channels_last: bool, repeats: int) -> float:
    """PyTorch's forward + backward (input and kernel gradients) of one conv, ms,
    at the shapes of `micro_benchmark` ([B, T, H, W, Cin], [kt, kh, kw, Cin, Cout])."""
    batch, frames, height, width, cin = x_shape
    kernel = kernel_shape[:3]
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    conv = nn.Conv3d(cin, kernel_shape[4], kernel, bias=False, padding="same"
                     ).to(memory_format=layout)
    x = torch.rand(batch, cin, frames, height, width).to(memory_format=layout)
    x.requires_grad_(True)

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).square().sum().backward()

    return _timed(step, repeats) * 1e3


def micro_benchmark(repeats: int) -> None:
    """Forward+backward times of S3D's ops under each lowering, at the shapes
    they have for batch 8 × 16×112² (e.g. conv_2c: [8, 8, 28, 28, 64] → 192),
    and of PyTorch's convolutions in both layouts: where XLA:CPU loses."""
    rng = np.random.default_rng(0)

    def timed_grad(fn, *args):
        loss = lambda *a: jnp.sum(jnp.square(fn(*a)))
        grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))
        return _timed(lambda: jax.block_until_ready(grad(*args)), repeats) * 1e3

    convs = {
        "stem 2x4x4 24->64": ((8, 8, 56, 56, 24), (2, 4, 4, 24, 64)),
        "1x3x3 64->192": ((8, 8, 28, 28, 64), (1, 3, 3, 64, 192)),
        "3x1x1 192->192": ((8, 8, 28, 28, 192), (3, 1, 1, 192, 192)),
        "1x1x1 192->192": ((8, 8, 28, 28, 192), (1, 1, 1, 192, 192)),
    }
    for case, (x_shape, kernel_shape) in convs.items():
        x = jnp.asarray(rng.random(x_shape, np.float32))
        kernel = jnp.asarray(rng.normal(size=kernel_shape).astype(np.float32))
        times = {}
        for lowering in ("xla_3d", "factorized"):
            conv = functools.partial(layers.conv3d_same, lowering=lowering)
            times[lowering] = timed_grad(conv, x, kernel)
        for channels_last in (False, True):
            name = "torch " + ("NDHWC" if channels_last else "NCDHW")
            times[name] = torch_conv_grad_ms(x_shape, kernel_shape, channels_last, repeats)
        flops = 3 * 2 * np.prod(x_shape[:4]) * np.prod(kernel_shape)  # fwd + 2 grads, stride 1
        for name, ms in times.items():
            print(f"conv {case:20s} {name:14s} fwd+bwd {ms:8.1f} ms "
                  f"{flops / ms / 1e6:6.1f} GFLOP/s", flush=True)
    pools = {
        "pool 1x3x3/2 (2a)": ((8, 8, 56, 56, 64), (1, 3, 3), (1, 2, 2)),
        "pool 3x3x3/1 (3b)": ((8, 8, 14, 14, 256), (3, 3, 3), (1, 1, 1)),
    }
    for case, (x_shape, window, strides) in pools.items():
        x = jnp.asarray(rng.random(x_shape, np.float32))
        for name, pool in (("reduce_window", _reduce_window_max_pool),
                           ("separable", layers.max_pool_3d)):
            ms = timed_grad(lambda x, pool=pool: pool(x, window, strides), x)
            print(f"{case:25s} {name:14s} fwd+bwd {ms:8.1f} ms", flush=True)


# Cores' worth of CPU that other processes may use during the timed rounds
# (per core of the machine) before no ratio is printed: the contenders would
# compete with that work unevenly.
QUIET_LOAD_PER_CORE = 0.1


def busy_cpu_seconds() -> float:
    """CPU-seconds that all processes of this machine have spent busy (Linux)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round and framework")
    parser.add_argument("--warm_steps", type=int, default=1,
                        help="untimed steps per round and framework before its timed ones")
    parser.add_argument("--lowering", default="factorized", choices=["factorized", "xla_3d"])
    parser.add_argument("--no_compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--micro", action="store_true", help="conv lowering micro-benchmark only")
    args = parser.parse_args()
    keep_freed_memory()  # as the training entry point does; PyTorch's allocations too
    cores = os.cpu_count()
    torch.set_num_threads(cores)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads (XLA uses all {cores} cores); load "
          f"average {os.getloadavg()[0]:.2f} before starting", flush=True)
    if args.micro:
        micro_benchmark(args.steps + 1)
        return
    shape = (args.batch, args.frames, args.size)
    trainers = {"vtlearn (JAX)": JaxTrainer(*shape, args.lowering),
                "PyTorch NCDHW": TorchTrainer(*shape),
                "PyTorch channels_last_3d": TorchTrainer(*shape, channels_last=True)}
    if not args.no_compile:
        trainers["PyTorch channels_last_3d + compile"] = TorchTrainer(
            *shape, channels_last=True, compiled=True)
    for trainer in trainers.values():
        trainer.step()  # compiles
    wall = {name: [] for name in trainers}
    cpu = {name: [] for name in trainers}
    start = (time.perf_counter(), time.process_time(), busy_cpu_seconds())
    for round_ in range(args.rounds):
        for name, trainer in trainers.items():
            for _ in range(args.warm_steps):
                trainer.step()
            for _ in range(args.steps):
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                trainer.step()
                wall[name].append(time.perf_counter() - wall_start)
                cpu[name].append(time.process_time() - cpu_start)
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
            f"{name} {wall[name][-1]:.2f} s" for name in trainers), flush=True)
    elapsed, own, busy = (now - then for now, then in zip(
        (time.perf_counter(), time.process_time(), busy_cpu_seconds()), start))
    others = max(busy - own, 0.0) / elapsed  # cores other processes kept busy
    ours = "vtlearn (JAX)"
    step = {name: statistics.median(times) for name, times in wall.items()}
    cpu_step = {name: statistics.median(times) for name, times in cpu.items()}
    matmul_rate = matmul_flops_per_s()
    flops = trainers[ours].flops
    print(f"S3D-G train step, batch {args.batch} × {args.frames}×{args.size}², "
          f"lowering={args.lowering}; median over {args.rounds} × {args.steps} steps")
    print(f"{'':36s} {'clips/s':>8s} {'s/step':>7s} {'CPU-s/step':>10s} {'GFLOP/s':>8s}")
    for name in trainers:
        print(f"{name:36s} {args.batch / step[name]:8.2f} {step[name]:7.2f} "
              f"{cpu_step[name]:10.2f} {flops / step[name] / 1e9:8.1f}")
    print(f"step FLOPs (XLA cost analysis): {flops / 1e9:.1f} GFLOP; float32 2048² matmul "
          f"{matmul_rate / 1e9:.1f} GFLOP/s; vtlearn at {flops / step[ours] / matmul_rate:.0%} "
          f"of it")
    print(f"other processes kept {others:.2f} of {cores} cores busy during the timed rounds")
    if others > QUIET_LOAD_PER_CORE * cores:
        print("NO RATIO: the machine was loaded; rerun on a quiet machine.")
        return
    for name in trainers:
        if name != ours:
            print(f"ratio vtlearn / {name}: {step[name] / step[ours]:.2f}x wall, "
                  f"{cpu_step[name] / cpu_step[ours]:.2f}x CPU time")
    print("Read the wall ratios (same threads, alternating rounds on a quiet machine); the "
          "CPU ratios say how much of a difference is a framework leaving cores idle.")


if __name__ == "__main__":
    main()
