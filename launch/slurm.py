"""Train on GPUs: a SLURM job over several nodes, or one node's GPUs directly.

    python launch/slurm.py --name=milnce --nodes=4 --gpus_per_node=8 \
        --config=configs/milnce_s3d.py --workdir=/shared/runs/milnce \
        [--partition=gpu] [--time=72:00:00] [--dry_run] [-- overrides ...]

Writes `logs/NAME.sbatch` and submits it with `sbatch`. The job runs one task
per GPU (`--ntasks-per-node` = GPUs, `--gpus-per-task=1`): JAX's SLURM
detection (`jax.distributed.initialize()` under `--distributed`) gives each
task one local device and finds the coordinator from SLURM's variables. The
workdir must be on storage every node reaches (a shared filesystem or gs://).

`--nodes=1 --local` instead runs the job on this machine's GPUs as a single
process, which sees them all: `python -m vtlearn.main --config=...`.

`--dry_run` prints the batch script and the exact `sbatch` (or local)
command, and runs nothing. Arguments after `--` go to `vtlearn.main`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vtlearn import cli  # noqa: E402
from commands import Runner, make_parser, split_overrides, training_command  # noqa: E402


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    argv, overrides = split_overrides(argv)
    parser = make_parser(__doc__)
    parser.add_argument("--name", required=True, help="job name")
    parser.add_argument("--config", default="configs/milnce_s3d.py")
    parser.add_argument("--workdir", required=True, help="run directory all nodes reach")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus_per_node", type=int, default=8)
    parser.add_argument("--cpus_per_gpu", type=int, default=8, help="tf.data workers per task")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--time", default="24:00:00", help="wall-clock limit, HH:MM:SS")
    parser.add_argument("--python", default="python", help="interpreter on the nodes")
    parser.add_argument("--local", action="store_true",
                        help="run on this machine's GPUs (one process), no SLURM")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.gpus_per_node < 1:
        parser.error("--nodes and --gpus_per_node must be >= 1")
    if args.local and args.nodes != 1:
        parser.error("--local runs on this one machine: --nodes=1")
    return args, overrides


def batch_script(args: argparse.Namespace, overrides: list[str]) -> str:
    """The sbatch file: one task per GPU on every node, all running vtlearn.main."""
    directives = {
        "job-name": args.name, "nodes": args.nodes, "ntasks-per-node": args.gpus_per_node,
        "gpus-per-task": 1, "cpus-per-task": args.cpus_per_gpu, "time": args.time,
        "output": f"logs/{args.name}-%j.out", "partition": args.partition,
        "account": args.account}
    lines = ["#!/bin/bash"] + [f"#SBATCH --{k}={v}" for k, v in directives.items()
                               if v is not None]
    train = training_command(args.config, args.workdir, overrides, args.python)
    lines += ["set -euo pipefail",
              "# A process per GPU; JAX reads SLURM_* to find its rank and coordinator.",
              "srun --kill-on-bad-exit=1 " + shlex.join(train), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    launch(parse(sys.argv[1:] if argv is None else argv))


def launch(parsed: tuple[argparse.Namespace, list[str]]) -> None:
    args, overrides = parsed
    run = Runner(args.dry_run)
    if args.local:
        run([args.python, "-m", "vtlearn.main", f"--config={args.config}",
             f"--workdir={args.workdir}", *overrides])
        return
    script = batch_script(args, overrides)
    path = os.path.join("logs", f"{args.name}.sbatch")
    if args.dry_run:
        print(f"# {path}:")
        print("\n".join(f"# | {line}" for line in script.splitlines()))
    else:
        os.makedirs("logs", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
    run(["sbatch", path])


if __name__ == "__main__":
    cli.run(parse, launch)
