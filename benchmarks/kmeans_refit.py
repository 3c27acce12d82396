"""Benchmark: one online k-means refit of MCN (`vtlearn.losses.clustering.kmeans`) on CPU.

Run: python benchmarks/kmeans_refit.py [--points 45056] [--dim 256] [--clusters 256]
         [--iterations 10] [--repeats 5] [--no-train-step]

Setting: MCN's refit clusters the queue of 20 earlier batches (half of each
sample's clips: 20 × 4,096 / 2 = 40,960) plus the batch (4,096 clips), i.e.
45,056 points; the paper has D = 4,096 and up to 100 iterations, sized down
here to D = 256, K = 256 and 10 Lloyd iterations for a 2-core CPU. The
points are standard Gaussian noise (float32), on which Lloyd's algorithm does
not converge within 10 iterations, so every contender runs all of them. Ours
is `clustering.kmeans` jitted with `iterations` static and tolerance 0 (it
stops early only once the centroids stop moving exactly), on one device.
Compared in the same run, on the same points, from the same K initial
centroids (K distinct points), for the same number of iterations, against

(a) scikit-learn `KMeans(init=<those centroids>, n_init=1, max_iter=I, tol=0,
    algorithm="lloyd")`, fed float32 (it then computes in float32), with its
    OpenMP threads = the cores. Its fit also centres the data and
    precomputes squared norms; that is part of one refit with its API. Ours
    is checked against it: the fraction of equal assignments (float32 sums
    in another order may flip a near-tie), the relative inertia difference
    and the largest centroid difference;
(b) `fast_pytorch_kmeans.KMeans(mode="euclidean", max_iter=I, tol=0)`, torch
    on CPU with threads = the cores, `fit_predict(points, centroids=<those
    centroids>)` and then `predict` (its `fit_predict` returns the labels of
    the last iteration's *starting* centroids; `predict` gives the labels of
    the final ones, the extra assignment pass ours and (a) also make). It is
    a benchmark-only dependency (`pip install fast-pytorch-kmeans`) and is
    skipped with a note when it does not import. An empty cluster there
    becomes 0 (ours keeps its centroid, (a) relocates it); the table's
    "empty" column says whether that arose.

Ours sums each cluster's points with `jax.ops.segment_sum` (N·D adds); it
first used a one-hot matmul (2·N·K·D FLOPs, as many as the distances), and
this benchmark measured that at 0.26× scikit-learn where segment sums gave
0.64× (load ~4 on 2 cores).

Timings exclude compilation/warm-up, alternate between the contenders,
and report the median of `--repeats`, wall clock and process CPU time (the
CPU time of a multi-threaded contender adds up its threads); the ratio is
peer wall time / ours (> 1: ours is faster). The load average is printed
with a warning when it exceeds the cores: then every number is slowed, the
ratios less so. The comparison runs ours on one device; with JAX's CPU split
into 8 virtual devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)
that one device's program ran on about 1.25 of 2 cores in one loaded run
and took twice as long as with a single device, so time the comparison
without that flag; the train-step part uses whatever devices there are.

`--train-step` (default on): the refit's share of MCN's train step at the
`configs/mcn.py:local` preset (D = 256, K = 64, 50 iterations with
tolerance 1e-4, queue 20 × 16 × 4 = 1,280 clips + 128 in the batch, a refit
every 20 steps). A `vtlearn.train.Trainer` on all of JAX's devices runs
`train_step` on random batches shaped by `pipeline.sample_spec` (text ids
drawn from [1, vocab)): step 0 (compilation and the first refit, from
random points of the batch alone), then `--cycles` × refit_every steps,
each timed; the steps with step % refit_every == 0 refit (inside a
`lax.cond`), the others do not. The queue, pushed every step, is full by
step 20, the first timed refit. The refit's points are split over the
devices (each assigns its share; the centroid sums are reduced across them
in every iteration), as in training. Printed: ms per refit step
and per plain step (medians), and the amortised share of training time
spent refitting,

    share = (refit - plain) / (refit_every · plain + (refit - plain)),

i.e. the refit's extra time over the time of one refit period (one refit
step + refit_every − 1 plain steps). Also printed: how many Lloyd
iterations the last timed refit ran before its tolerance stopped it (rerun
on the host from the same start); the share depends on it.
"""

import argparse
from collections.abc import Callable
import dataclasses
import functools
import os
from pathlib import Path
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vtlearn import cli
from vtlearn.losses import clustering
from vtlearn.main import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
# The paper's refit: queue of 20 batches × 4,096 clips × 1/2 + the batch; D; K; iterations.
PAPER = dict(points=20 * 4096 // 2 + 4096, dim=4096, clusters=256, iterations=100)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall-clock and process-CPU seconds of one call."""

    wall: float
    cpu: float


def time_interleaved(functions: dict[str, Callable[[], object]], repeats: int,
                     warm_up: bool = True) -> dict[str, Timing]:
    """Times each function (which returns once its result is computed),
    alternating between them so that load from other processes hits all alike;
    one warm-up call each (unless the caller made it) is excluded."""
    for function in functions.values() if warm_up else ():
        function()
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            function()
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
    return {
        name: Timing(statistics.median(wall[name]), statistics.median(cpu[name]))
        for name in functions
    }


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def load_line() -> str:
    load = os.getloadavg()[0]
    line = f"load average (1 min) {load:.2f} on {cores()} cores"
    if load > cores():
        line += (f"  WARNING: load > cores: other processes share the CPU, every time is"
                 f" inflated (ratios less so)")
    return line


def lloyd_flops(points: int, dim: int, clusters: int) -> int:
    """FLOPs of one Lloyd iteration: 2·N·D·K distances + N·D sums."""
    return 2 * points * dim * clusters + points * dim


def make_data(points: int, dim: int, clusters: int, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """float32 Gaussian points [N, D] and K distinct ones of them as the initial centroids."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((points, dim), dtype=np.float32)
    return x, x[rng.choice(points, clusters, replace=False)].copy()


@dataclasses.dataclass(frozen=True)
class Result:
    """One contender's refit, on the host."""

    labels: np.ndarray  # [N] int, w.r.t. `centroids`
    centroids: np.ndarray  # [K, D]
    inertia: float
    iterations: int | None  # Lloyd iterations run, where the contender says
    empty: int  # clusters without points at the end


def host_inertia(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    return float(np.sum((x.astype(np.float64) - centroids[labels]) ** 2))


def empty_clusters(labels: np.ndarray, clusters: int) -> int:
    return int(np.sum(np.bincount(labels, minlength=clusters) == 0))


# ------------------------------------------------------------------------------ ours


ours_kmeans = jax.jit(clustering.kmeans, static_argnames=("iterations", "metric"))


def ours(x: jax.Array, valid: jax.Array, init: jax.Array, iterations: int
         ) -> clustering.KMeansResult:
    return jax.block_until_ready(
        ours_kmeans(x, valid, init, iterations=iterations, metric="euclidean", tolerance=0.0))


# ------------------------------------------------------------------------------ peers


def sklearn_kmeans(x: np.ndarray, init: np.ndarray, iterations: int):
    """Peer (a): fitted `sklearn.cluster.KMeans`, float32 in and out."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=init.shape[0], init=init, n_init=1, max_iter=iterations, tol=0.0,
                  algorithm="lloyd").fit(x)


def torch_kmeans_factory(iterations: int) -> Callable | None:
    """Peer (b), or None (with a printed note) when fast_pytorch_kmeans does not import."""
    try:
        import fast_pytorch_kmeans
        import torch
    except ImportError as error:
        print(f"fast_pytorch_kmeans skipped: it does not import ({error}); "
              f"pip install fast-pytorch-kmeans")
        return None
    torch.set_num_threads(cores())

    def refit(x: "torch.Tensor", init: "torch.Tensor"):
        model = fast_pytorch_kmeans.KMeans(n_clusters=init.shape[0], max_iter=iterations,
                                           tol=0.0, mode="euclidean")
        with torch.no_grad():
            model.fit_predict(x, centroids=init)
            return model.predict(x), model.centroids

    return refit


# ------------------------------------------------------------------------------ report


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def compare_refits(args) -> None:
    n, d, k, iterations = args.points, args.dim, args.clusters, args.iterations
    x, init = make_data(n, d, k)
    x_jax, init_jax = jnp.asarray(x), jnp.asarray(init)
    valid = jnp.ones([n], bool)
    print(f"\n== one refit: N = {n:,} points (Gaussian noise, float32), D = {d}, K = {k}, "
          f"{iterations} Lloyd iterations from the same K initial centroids")

    functions = {
        "ours": lambda: ours(x_jax, valid, init_jax, iterations),
        "sklearn": lambda: sklearn_kmeans(x, init, iterations),
    }
    labels = {"ours": "ours: vtlearn clustering.kmeans (jit, XLA:CPU)",
              "sklearn": "(a) scikit-learn KMeans lloyd, float32",
}
    torch_refit = torch_kmeans_factory(iterations)
    if torch_refit is not None:
        import fast_pytorch_kmeans  # noqa: F401 (version for the label)
        import torch
        from importlib.metadata import version

        x_torch, init_torch = torch.from_numpy(x), torch.from_numpy(init)
        functions["torch"] = lambda: torch_refit(x_torch, init_torch)
        labels["torch"] = (f"(b) fast_pytorch_kmeans {version('fast-pytorch-kmeans')}, "
                           f"torch {torch.__version__.split('+')[0]} CPU")

    # Results (from calls outside the timing; they are the warm-up), then the timings.
    ours_out = ours(x_jax, valid, init_jax, iterations)
    sk = sklearn_kmeans(x, init, iterations)
    results = {
        "ours": Result(np.asarray(ours_out.assignment), np.asarray(ours_out.centroids),
                       float(ours_out.inertia), None, int(ours_out.empty)),
        "sklearn": Result(sk.labels_, sk.cluster_centers_, float(sk.inertia_), int(sk.n_iter_),
                          empty_clusters(sk.labels_, k)),
    }
    if torch_refit is not None:
        torch_labels, torch_centroids = (t.numpy() for t in functions["torch"]())
        results["torch"] = Result(torch_labels, torch_centroids,
                                  host_inertia(x, torch_centroids, torch_labels), None,
                                  empty_clusters(torch_labels, k))
    timings = time_interleaved(functions, args.repeats, warm_up=False)

    threads = (f"threads: XLA:CPU its own pool, scikit-learn OpenMP "
               f"{_sklearn_threads()}, torch {cores()}")
    print(f"{args.repeats} repeats after a warm-up (median); {threads}; {load_line()}")
    header = (f"{'contender':<50} {'wall ms':>9} {'cpu ms':>9} {'peer/ours':>9} "
              f"{'agree(a)':>9} {'inertia':>14} {'rel.diff(a)':>11} {'iters':>5} {'empty':>5}")
    print(header)
    print("-" * len(header))
    reference = results["sklearn"]
    for name in ("ours", "sklearn", "torch"):
        if name not in results:
            continue
        timing, result = timings[name], results[name]
        ratio = "" if name == "ours" else f"{timing.wall / timings['ours'].wall:8.2f}x"
        iters = "?" if result.iterations is None else str(result.iterations)
        print(f"{labels[name]:<50} {timing.wall * 1e3:9.1f} {timing.cpu * 1e3:9.1f} {ratio:>9} "
              f"{agreement(result.labels, reference.labels):9.6f} {result.inertia:14.6g} "
              f"{relative(result.inertia, reference.inertia):11.2e} {iters:>5} "
              f"{result.empty:5d}")
    print("peer/ours = peer wall time / ours (> 1: ours is faster); agree(a) = fraction of "
          "points with (a)'s assignment; iters: Lloyd iterations (a) reports ('?': not "
          "reported; ours stops early only at a zero centroid shift)")

    mine = results["ours"]
    differ = int(np.sum(mine.labels != reference.labels))
    print(f"agreement ours vs scikit-learn: {agreement(mine.labels, reference.labels):.6f} "
          f"({differ:,} of {n:,} assignments differ), inertia relative difference "
          f"{relative(mine.inertia, reference.inertia):.2e}, largest centroid difference "
          f"{np.max(np.abs(mine.centroids - reference.centroids)):.2e}")
    if "torch" in results:
        theirs = results["torch"]
        print(f"agreement fast_pytorch_kmeans vs scikit-learn: "
              f"{agreement(theirs.labels, reference.labels):.6f}, vs ours: "
              f"{agreement(theirs.labels, mine.labels):.6f}")

    flops = lloyd_flops(n, d, k)
    rate = (iterations * flops + flops // 2) / timings["ours"].wall  # + the final assignment
    paper_flops = lloyd_flops(PAPER["points"], PAPER["dim"], PAPER["clusters"])
    print(f"FLOPs per Lloyd iteration (2·N·D·K distances + N·D sums): here {flops / 1e9:.2f} G")
    print(f"  ours ran {rate / 1e9:.1f} GFLOP/s ({iterations} iterations + the final "
          f"assignment)")
    paper = f"N = {PAPER['points']:,}, D = {PAPER['dim']:,}, K = {PAPER['clusters']}"
    print(f"  paper scale ({paper}): {paper_flops / 1e9:.1f} G per iteration; at this "
          f"machine's rate ~{paper_flops / rate:.1f} s per iteration, up to "
          f"~{PAPER['iterations'] * paper_flops / rate:.0f} s for a refit of up to "
          f"{PAPER['iterations']} iterations")

    fraction = agreement(mine.labels, reference.labels)
    assert fraction >= 0.99, f"ours and scikit-learn disagree on {1 - fraction:.2%} of points"
    assert relative(mine.inertia, reference.inertia) < 1e-3, "inertia differs from scikit-learn's"


def _sklearn_threads() -> str:
    try:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:  # private: may move
        return "?"
    return str(_openmp_effective_n_threads())


# ------------------------------------------------------------------------------ train step


def random_batch(spec: dict, batch_size: int, vocab_size: int, rng: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """A batch of `sample_spec`'s shapes: floats N(0, 1), text ids in [1, vocab),
    every caption valid, audio fully valid."""
    batch = {}
    for key, (shape, dtype) in spec.items():
        shape = (batch_size,) + tuple(shape)
        if key == "text":
            batch[key] = rng.integers(1, vocab_size, shape, dtype=dtype)
        elif key == "audio_frames":
            batch[key] = np.full(shape, spec["audio"][0][1], dtype)  # every frame valid
        elif dtype == np.bool_:
            batch[key] = np.ones(shape, dtype)
        elif np.issubdtype(dtype, np.integer):
            batch[key] = rng.integers(0, 10, shape, dtype=dtype)
        else:
            batch[key] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return batch


def refit_share(refit: float, plain: float, refit_every: int) -> float:
    """Fraction of training time the refit adds: its extra time over one refit
    period (one refit step + refit_every - 1 plain steps)."""
    extra = refit - plain
    return extra / (refit_every * plain + extra)


def lloyd_iterations_run(points, valid, start, lc) -> int:
    """Lloyd steps `clustering.kmeans` makes from `start` before its tolerance stops it."""
    step = jax.jit(clustering.lloyd_step, static_argnums=3)
    centroids = start
    for i in range(1, lc.kmeans_iterations + 1):
        new, _ = step(points, valid, centroids, lc.cluster_metric)
        if float(jnp.sum((new - centroids) ** 2)) <= lc.kmeans_tolerance:
            return i
        centroids = new
    return lc.kmeans_iterations


def train_step_share(args) -> None:
    from vtlearn import config_defaults, sharding
    from vtlearn.data import pipeline
    from vtlearn.data.sources import resolve_data
    from vtlearn.data.text import Vocabulary
    from vtlearn.train import Trainer

    config = resolve_data(config_defaults.load_config(f"{ROOT / 'configs' / 'mcn.py'}:local"))
    lc, batch_size = config.loss, config.train.batch_size
    mesh = sharding.make_mesh()
    trainer = Trainer(config, mesh)
    n_keep, queue_rows = trainer.method.queue_rows
    clips = batch_size * config.data.num_pairs
    print(f"\n== share of MCN's train step, configs/mcn.py:local: batch {batch_size} × "
          f"{config.data.num_pairs} clips, D = {config.model.embedding_dim}, "
          f"K = {lc.num_clusters}, refit every {lc.refit_every} steps over {queue_rows:,} queued"
          f" + {clips} batch clips, up to {lc.kmeans_iterations} iterations, tolerance "
          f"{lc.kmeans_tolerance:g}; {mesh.size} device(s), the refit's points split over them")

    spec = pipeline.sample_spec(config.data)
    vocab_size = len(Vocabulary.load(config.data.vocab_path))
    rng = np.random.default_rng(0)
    batches = [sharding.global_batch(random_batch(spec, batch_size, vocab_size, rng), mesh)
               for _ in range(4)]
    state = trainer.init_state()

    def run(state, step: int):  # `state.step` == step: it decides whether the step refits
        state, metrics = trainer.train_step(state, batches[step % len(batches)])
        return jax.block_until_ready(state), metrics  # the argument was donated

    start = time.perf_counter()
    state, _ = run(state, 0)  # step 0: compiles; the first refit (from random points)
    compile_s = time.perf_counter() - start
    refit, plain = [], []
    for step in range(1, args.cycles * lc.refit_every + 1):
        refits = step % lc.refit_every == 0
        if refits:  # the refit's start and queue, to count its iterations afterwards
            clusters = state.model_state["clusters"]
            before = jax.device_get((clusters["queue"], clusters["queue_valid"],
                                     clusters["centroids"]))  # copies: `run` donates them
        wall = time.perf_counter()
        state, _ = run(state, step)
        (refit if refits else plain).append(time.perf_counter() - wall)
    refit_s, plain_s = statistics.median(refit), statistics.median(plain)
    extra = refit_s - plain_s
    share = refit_share(refit_s, plain_s, lc.refit_every)
    iterations = lloyd_iterations_run(*before, lc)

    print(f"step 0 (compile + the first refit) {compile_s:.1f} s; then steps "
          f"1-{len(refit) + len(plain)} timed: {len(refit)} refit(s), {len(plain)} plain; "
          f"{load_line()}")
    print(f"{'step':<28} {'ms (median)':>11}")
    print(f"{'refit (step % ' + str(lc.refit_every) + ' == 0)':<28} {refit_s * 1e3:11.1f}")
    print(f"{'plain':<28} {plain_s * 1e3:11.1f}")
    print(f"{'refit extra':<28} {extra * 1e3:11.1f}")
    print(f"refit share of training time: {share:.1%}  = extra / ({lc.refit_every} · plain + "
          f"extra), the refit's added time over one refit period")
    print(f"the last timed refit ran {iterations} of up to {lc.kmeans_iterations} Lloyd "
          f"iterations (rerun on the host from its start on its {queue_rows:,} queued points;"
          f" the batch's {clips} left out)")


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=45_056)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-step", "--train_step", action=argparse.BooleanOptionalAction,
                        default=True, help="also time MCN's train step at its local preset")
    parser.add_argument("--cycles", type=int, default=2,
                        help="timed refit periods (refit_every steps each) of --train-step")
    args = parser.parse_args()
    keep_freed_memory()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} "
          f"device(s) (the refit comparison uses one); {load_line()}")
    compare_refits(args)
    if args.train_step:
        train_step_share(args)


if __name__ == "__main__":
    main()
