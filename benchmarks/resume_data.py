"""Benchmark: time to the first training batch after a resume, at sample 0 and deep into the stream.

Run: python benchmarks/resume_data.py [--position 1000000] [--batch 256] [--repeats 3]
(a few minutes on 2 cores: reaching the position once is most of it)

Setting: the tiny lab's training split with its features (`use_lab_features`,
the feature tower's inputs; records, shuffle buffer and interleave as in any
run), `batch` samples per batch on one process.

vtlearn: `pipeline.iterate_train(..., resume_from=DIR)`: the pipeline is
rebuilt and its saved tf.data position (`TrainStream.save` at that sample,
what every checkpoint now holds) restored; then the first batch is taken.

Peer: the same stream skipping to the sample (`start_index`, how vtlearn
resumed before, and what it still does for a checkpoint without a saved
position): it reads every record before the position again.

Both are checked to give the same next batch. Printed: seconds to the first
batch at sample 0 and at `--position` (fastest of `--repeats`), the ratio of
the two for vtlearn (the goal: at most 1.5, i.e. flat in the position) and the
peer's seconds and its ratio to vtlearn at the position. The load average
is printed: on a loaded machine, re-run.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from vtlearn import cli


def first_batch_seconds(make) -> tuple[float, dict]:
    started = time.perf_counter()
    batch = next(make())
    return time.perf_counter() - started, batch


def main() -> None:
    parser = cli.argument_parser(description=__doc__.split("\n")[0])
    parser.add_argument("--position", type=int, default=1_000_000, help="samples consumed")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out_dir", default=os.path.join(tempfile.gettempdir(),
                                                          "vtlearn_bench_resume"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vtlearn.config_defaults import load_config, use_lab_features
    from vtlearn.data import pipeline, sources

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = load_config(f"{root}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = os.path.join(args.out_dir, "lab")
    use_lab_features(config)
    cfg = sources.resolve_data(config).data

    saved = {}
    for position in (0, args.position):
        directory = os.path.join(args.out_dir, f"position_{position}")
        stream = pipeline.iterate_train(cfg, args.batch)
        started, reached = time.perf_counter(), 0
        while reached < position:
            reached = int(next(stream)["index"][-1]) + 1
        stream.save(directory)
        saved[position] = (directory, reached, next(stream))
        print(f"reached sample {reached} in {time.perf_counter() - started:.0f} s; "
              f"position saved to {directory}")

    results = {}
    for position, (directory, reached, expected) in saved.items():
        best = float("inf")
        for _ in range(args.repeats):
            seconds, batch = first_batch_seconds(lambda: pipeline.iterate_train(
                cfg, args.batch, start_index=reached, resume_from=directory))
            np.testing.assert_array_equal(batch["index"], expected["index"])
            best = min(best, seconds)
        results[position] = best
    peer, batch = first_batch_seconds(lambda: pipeline.iterate_train(
        cfg, args.batch, start_index=saved[args.position][1]))
    np.testing.assert_array_equal(batch["index"], saved[args.position][2]["index"])

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"vtlearn, restored position: first batch at sample 0 {results[0]:.2f} s, at sample "
          f"{args.position:,} {results[args.position]:.2f} s: ratio "
          f"{results[args.position] / results[0]:.2f} (goal <= 1.5)")
    print(f"peer, skipping to sample {args.position:,}: {peer:.2f} s = "
          f"{peer / results[args.position]:.1f}x vtlearn's")


if __name__ == "__main__":
    main()
