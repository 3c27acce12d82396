"""Benchmark: value + gradient of the VT-TWINS S2DTW contrastive loss (eq. 13) on CPU.

Run: python benchmarks/s2dtw_loss.py [--repeats 7] [--tslearn-pairs 512]

Setting: global batch 64 → 64×64 = 4,096 (video, caption-sequence) pairs, n = m = 8
clips/captions of 512-d embeddings → 17×17 matrices after the dummies (γ = 0.1,
φ = 0.5). Compared in the same run against

(a) the same loss with the soft-DTW recursion written as a straightforward
    `lax.scan` over rows with an inner `lax.scan` over the cells of a row,
    vectorised over the pairs, the soft minimum as `jax.nn.logsumexp`, and
    differentiated by `jax.grad` (autodiff through the scans);
(b) tslearn's soft-DTW (`tslearn.metrics.SoftDTW`, numba) value + gradient,
    one call per pair on the same 17×17 matrices Δ̂^φ; a subset of pairs is
    timed and extrapolated to 4,096. This covers only the recursion (not the
    distances, smoothing or InfoNCE), so it is also compared with our soft-DTW
    alone on those matrices. tslearn is a benchmark-only dependency
    (`pip install -e ".[benchmarks]"`); its backend is passed explicitly because its
    auto-detection formats every input array as a string.
(c) the batched peers a user would pick for the recursion alone, on the same
    matrices, each first checked to give our values and gradients
    (`batched_peers`): tslearn's `SoftDTWLossPyTorch`, pysdtw and ott-jax.

Ours runs the soft-DTW recursion as one anti-diagonal wavefront over chunks of
256 pairs laid side by side (`vtlearn.alignment.soft_dtw`, the CPU default).

The process keeps freed memory mapped, as the training entry point does
(`vtlearn.main.keep_freed_memory`); without it every call page-faults XLA's
temporaries back in, which adds about half to both contenders' times.

Timings use `block_until_ready`, exclude compilation/warm-up, alternate
between the contenders, and report the median of several repeats, both wall
clock and process CPU time (the latter is steadier on a shared machine). The
ratios measured in the same run are what matter. The same run times the part
of the loss that ours and (a) share (the recursion replaced by a sum), which
bounds the full-loss ratio. Scaling tables time the full loss against (a) for
n = 4…32 and B = 16…128.
"""

from collections.abc import Callable
import dataclasses
import os
import statistics
import time

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from vtlearn import cli
from vtlearn.alignment import insert_dummies
from vtlearn.alignment import l2_normalize
from vtlearn.alignment import local_neighborhood_smoothing
from vtlearn.alignment import pairwise_distance
from vtlearn.alignment import soft_dtw
from vtlearn.losses.s2dtw_nce import s2dtw_nce_loss
from vtlearn.main import keep_freed_memory

GAMMA = 0.1
PHI = 0.5
DIM = 512


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall-clock and process-CPU seconds of one call."""

    wall: float
    cpu: float


def time_interleaved(
    functions: dict[str, Callable[..., object]], *args, repeats: int
) -> dict[str, Timing]:
    """Times each function on `args`, alternating between them so that load from
    other processes hits all alike; one warm-up call each is excluded."""
    for function in functions.values():
        jax.block_until_ready(function(*args))
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            jax.block_until_ready(function(*args))
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
    return {
        name: Timing(statistics.median(wall[name]), statistics.median(cpu[name]))
        for name in functions
    }


def milliseconds(timing: Timing) -> str:
    return f"wall {timing.wall * 1e3:8.1f} ms  cpu {timing.cpu * 1e3:8.1f} ms"


def speedup(peer: Timing, ours: Timing) -> str:
    return f"ours is {peer.wall / ours.wall:5.1f}x (wall) {peer.cpu / ours.cpu:5.1f}x (cpu) faster"


def scan_soft_dtw(cost: jax.Array, gamma: float) -> jax.Array:
    """Peer (a): soft-DTW (eq. 4) as a row scan of cell scans, for autodiff.

    Args:
      cost: [n, m, B] (batch last, like ours, so neither pays a transpose).
      gamma: Soft-min parameter.

    Returns:
      [B] values r_{n,m}.
    """
    _, m, batch = cost.shape
    first_row = jnp.concatenate(
        [jnp.zeros((1, batch), cost.dtype), jnp.full((m, batch), jnp.inf, cost.dtype)]
    )  # r_{0, 0..m}

    def row_step(previous_row, cost_row):  # r_{i-1, 0..m} [m+1, B]; δ_{i, 1..m} [m, B].
        def cell_step(left, inputs):  # left: r_{i, j-1}.
            cost_ij, up, up_left = inputs
            neighbours = jnp.stack([up, left, up_left])
            r = cost_ij - gamma * jax.nn.logsumexp(-neighbours / gamma, axis=0)
            return r, r

        _, row = lax.scan(
            cell_step,
            jnp.full((batch,), jnp.inf, cost.dtype),
            (cost_row, previous_row[1:], previous_row[:-1]),
        )
        return jnp.concatenate([jnp.full((1, batch), jnp.inf, cost.dtype), row]), None

    last_row, _ = lax.scan(row_step, first_row, cost)
    return last_row[-1]


def dummy_matrices(video: jax.Array, text: jax.Array) -> jax.Array:
    """Δ̂^φ for every (video, caption sequence) pair: [2n+1, 2m+1, B·B]."""
    delta = pairwise_distance(
        l2_normalize(video), l2_normalize(text), all_pairs=True, batch_last=True
    )
    smoothed = local_neighborhood_smoothing(delta, GAMMA, batch_last=True)
    merged = insert_dummies(smoothed, PHI, batch_last=True)
    return merged.reshape(*merged.shape[:2], -1)


def loss_with_recursion(recursion: Callable[[jax.Array, float], jax.Array]):
    """The S2DTW InfoNCE loss (both directions) with `recursion` as soft-DTW."""

    def loss(video: jax.Array, text: jax.Array) -> jax.Array:
        batch = video.shape[0]
        logits = -recursion(dummy_matrices(video, text), GAMMA).reshape(batch, batch)
        positives = jnp.diagonal(logits)
        return 0.5 * (
            jnp.mean(jax.nn.logsumexp(logits, axis=1) - positives)
            + jnp.mean(jax.nn.logsumexp(logits, axis=0) - positives)
        )

    return loss


# Peer (a): the same loss with `scan_soft_dtw`.
scan_peer_loss = loss_with_recursion(scan_soft_dtw)
# Not a contender: the loss with the recursion replaced by a sum of the costs,
# i.e. the part (distances, smoothing, dummies, InfoNCE) ours and (a) share.
shared_part = loss_with_recursion(lambda cost, gamma: jnp.sum(cost, axis=(0, 1)))


def ours(video: jax.Array, text: jax.Array) -> jax.Array:
    return s2dtw_nce_loss(video, text, gamma=GAMMA, phi=PHI)


def embeddings(batch: int, length: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=(batch, length, DIM)), jnp.float32),
        jnp.asarray(rng.normal(size=(batch, length, DIM)), jnp.float32),
    )


def tslearn_time_per_pair(matrices: np.ndarray, pairs: int) -> Timing:
    """Peer (b): mean tslearn value + gradient time over the first `pairs` of [P, N, M] matrices."""
    from tslearn.backend import Backend  # Benchmark-only dependency.
    from tslearn.metrics import SoftDTW

    backend = Backend("numpy")
    matrices = np.asarray(matrices, np.float64)
    warm_up = SoftDTW(matrices[0], gamma=GAMMA, be=backend)
    warm_up.compute(), warm_up.grad()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for matrix in matrices[:pairs]:
        sdtw = SoftDTW(matrix, gamma=GAMMA, be=backend)
        sdtw.compute()
        sdtw.grad()
    return Timing(
        (time.perf_counter() - wall_start) / pairs, (time.process_time() - cpu_start) / pairs
    )


def batched_peers(matrices: np.ndarray) -> dict[str, Callable[[], tuple]]:
    """Soft-DTW value + gradient of every pair of [P, N, M] cost matrices, by the
    batched peers: each returns (values [P], gradients [P, N, M]) as NumPy.

    * tslearn's batched PyTorch loss (`SoftDTWLossPyTorch`: numba over the
      batch, torch autograd), given the costs through its `dist_func`;
    * pysdtw (numba on CPU, torch autograd), likewise;
    * ott-jax's `costs.SoftDTW` (an anti-diagonal `lax.scan`, autodiff), given
      the costs as rows dotted with one-hot vectors, vmapped over the pairs.
    """
    import pysdtw  # Benchmark-only dependencies.
    import torch
    from ott.geometry import costs
    from tslearn.metrics import SoftDTWLossPyTorch

    costs_t = torch.from_numpy(np.asarray(matrices, np.float32))
    columns = torch.zeros(costs_t.shape[0], costs_t.shape[2], costs_t.shape[2])

    def with_torch(loss):
        def run():
            cost = costs_t.clone().requires_grad_(True)
            values = loss(cost, columns)
            values.sum().backward()
            return values.detach().numpy(), cost.grad.numpy()
        return run

    @jax.tree_util.register_pytree_node_class
    class Given(costs.CostFn):
        """The cost of (row i of the matrix, one-hot j) is entry (i, j)."""

        def __call__(self, x, y):
            return jnp.dot(x, y)

    ott_soft_dtw = costs.SoftDTW(GAMMA, ground_cost=Given())
    eye = jnp.eye(matrices.shape[2])
    ott_step = jax.jit(jax.vmap(jax.value_and_grad(lambda c: ott_soft_dtw(c, eye))))
    matrices_j = jnp.asarray(matrices, jnp.float32)
    return {
        "tslearn batched": with_torch(SoftDTWLossPyTorch(gamma=GAMMA, dist_func=lambda x, y: x)),
        "pysdtw": with_torch(pysdtw.SoftDTW(gamma=GAMMA, dist_func=lambda x, y: x,
                                            use_cuda=False)),
        "ott-jax": lambda: jax.block_until_ready(ott_step(matrices_j)),
    }


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tslearn-pairs", type=int, default=512)
    args = parser.parse_args()
    keep_freed_memory()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} "
          f"device(s); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    contenders = {
        "ours": jax.jit(jax.value_and_grad(ours, argnums=(0, 1))),
        "peer": jax.jit(jax.value_and_grad(scan_peer_loss, argnums=(0, 1))),
    }
    video, text = embeddings(64, 8)
    losses = [contender(video, text)[0] for contender in contenders.values()]
    np.testing.assert_allclose(*losses, rtol=1e-4)  # Same function, two implementations.

    print("\n== batch 64, n = 8, d = 512: 4,096 pairs of 17x17 matrices, value + grad")
    shared_part_step = jax.jit(jax.value_and_grad(shared_part, argnums=(0, 1)))
    timings = time_interleaved(
        {**contenders, "shared": shared_part_step}, video, text, repeats=args.repeats
    )
    ours_time, peer_time = timings["ours"], timings["peer"]
    print(f"ours (chunked wavefront + custom VJP)   {milliseconds(ours_time)}")
    print(f"(a) jax.grad through row/cell lax.scan   {milliseconds(peer_time)}")
    print(f"    {speedup(peer_time, ours_time)} than (a)")
    shared = timings["shared"]
    print(f"the part both share (recursion -> sum)  {milliseconds(shared)}")
    print(f"    with a recursion that took no time, {speedup(peer_time, shared)} than (a)")

    matrices = jax.jit(dummy_matrices)(video, text)
    recursions = {
        "ours": jax.jit(jax.value_and_grad(lambda c: jnp.sum(soft_dtw(c, GAMMA, batch_last=True)))),
        "peer": jax.jit(jax.value_and_grad(lambda c: jnp.sum(scan_soft_dtw(c, GAMMA)))),
    }
    recursion = time_interleaved(recursions, matrices, repeats=args.repeats)
    num_pairs = matrices.shape[-1]
    per_pair = tslearn_time_per_pair(np.moveaxis(np.asarray(matrices), -1, 0), args.tslearn_pairs)
    tslearn = Timing(per_pair.wall * num_pairs, per_pair.cpu * num_pairs)
    print(f"(b) tslearn, {args.tslearn_pairs} of {num_pairs} pairs timed, extrapolated: ")
    print(f"                                         {milliseconds(tslearn)}")
    print(f"    full loss: {speedup(tslearn, ours_time)} than (b)")
    print("soft-DTW value + grad alone on the same 4,096 17x17 matrices:")
    print(
        f"  ours {milliseconds(recursion['ours'])}: {speedup(tslearn, recursion['ours'])} than (b)"
    )
    versus_peer = speedup(recursion["peer"], recursion["ours"])
    print(f"  (a)  {milliseconds(recursion['peer'])}: {versus_peer} than (a)")
    pairs_first = np.moveaxis(np.asarray(matrices), -1, 0)
    ours_values, ours_grads = jax.jit(jax.vmap(jax.value_and_grad(
        lambda c: soft_dtw(c, GAMMA))))(jnp.asarray(pairs_first))
    peers = batched_peers(pairs_first)
    for name, peer in peers.items():  # the same values and gradients, in float32
        values, grads = peer()
        np.testing.assert_allclose(values, ours_values, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(grads, ours_grads, rtol=1e-3, atol=1e-5, err_msg=name)
    ours_batched = recursions["ours"]
    batched = time_interleaved({"ours": lambda: ours_batched(matrices), **peers},
                               repeats=args.repeats)
    for name in peers:
        print(f"  {name:15s} {milliseconds(batched[name])}: "
              f"{speedup(batched[name], batched['ours'])} than {name}")

    print("\n== scaling with sequence length n (batch 64; (2n+1)x(2n+1) matrices), full loss")
    for length in (4, 8, 16, 32):
        row = time_interleaved(contenders, *embeddings(64, length), repeats=args.repeats)
        print(
            f"n = {length:3d}: ours {milliseconds(row['ours'])} | (a) {milliseconds(row['peer'])}"
        )
        print(f"          {speedup(row['peer'], row['ours'])}")

    print("\n== scaling with global batch B (n = 8; B*B pairs), full loss")
    for batch in (16, 32, 64, 128):
        row = time_interleaved(contenders, *embeddings(batch, 8), repeats=args.repeats)
        print(f"B = {batch:3d}: ours {milliseconds(row['ours'])} | (a) {milliseconds(row['peer'])}")
        print(f"          {speedup(row['peer'], row['ours'])}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (the ratios are the same run's; "
          "read them on a quiet machine)")


if __name__ == "__main__":
    main()
