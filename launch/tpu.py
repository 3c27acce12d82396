"""Train on a Cloud TPU VM (single host or pod slice) with `gcloud`.

    python launch/tpu.py STEP [STEP ...] --name=NAME --zone=ZONE \
        --accelerator_type=v4-32 --config=configs/milnce_s3d.py \
        --workdir=gs://BUCKET/runs/milnce [--spot | --queued] [--dry_run] \
        [-- --config.train.num_steps=1000 ...]

Steps, in the order given (`all` = create install unlock train logs):
  create   the TPU VM, on demand or `--spot`; `--queued` creates it as a
           queued resource and waits until it is ACTIVE;
  install  copies this checkout (`git archive HEAD`) to every worker and runs
           `pip install -e '.[tpu]'` there (`--install_spec` installs a pip
           spec instead, e.g. a wheel on a bucket);
  unlock   clears a stale TPU lock on every worker: kills processes holding
           /dev/accel* or /dev/vfio and removes /tmp/libtpu_lockfile (a
           killed run leaves them and the next one cannot open the TPU);
  train    starts `python -m vtlearn.main ... --distributed` on all workers
           in the background, logging to ~/vtlearn-NAME.log;
  logs     streams worker 0's log (Ctrl-C stops the stream, not the run);
  fetch    copies every worker's log to ./logs/NAME/ (checkpoints and
           metrics are already in the gs:// workdir);
  delete   deletes the TPU VM (or the queued resource).

`--dry_run` prints the exact commands, one per line, and runs nothing.
Arguments after `--` are passed to `vtlearn.main` (config overrides).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vtlearn import cli  # noqa: E402
from commands import Runner, make_parser, split_overrides, training_command  # noqa: E402

STEPS = ("create", "install", "unlock", "train", "logs", "fetch", "delete")
ALL = ("create", "install", "unlock", "train", "logs")
REMOTE_DIR = "~/vtlearn"
UNLOCK = ("sudo pkill -9 -f '[v]tlearn.main' || true; "  # [v]: not this shell itself
          "for d in /dev/accel* /dev/vfio/*; do [ -e \"$d\" ] && "
          "sudo lsof -t \"$d\" 2>/dev/null | xargs -r sudo kill -9; done; "
          "sudo rm -f /tmp/libtpu_lockfile")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    argv, overrides = split_overrides(argv)
    parser = make_parser(__doc__)
    parser.add_argument("steps", nargs="+", choices=STEPS + ("all",))
    parser.add_argument("--name", required=True, help="TPU VM (and job) name")
    parser.add_argument("--zone", required=True, help="e.g. us-central2-b")
    parser.add_argument("--project", default=None, help="default: gcloud's configured one")
    parser.add_argument("--accelerator_type", default="v4-8", help="e.g. v4-32, v5litepod-16")
    parser.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM image")
    parser.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
    parser.add_argument("--queued", action="store_true", help="create as a queued resource")
    parser.add_argument("--config", default="configs/milnce_s3d.py")
    parser.add_argument("--workdir", default=None, help="gs://... run directory")
    parser.add_argument("--install_spec", default=None,
                        help="pip spec to install instead of copying this checkout")
    parser.add_argument("--poll_seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if "train" in args.steps or "all" in args.steps:
        if not args.workdir:
            parser.error("--workdir is required to train (a gs:// path every worker reaches)")
        if not args.workdir.startswith("gs://"):
            parser.error(f"--workdir={args.workdir}: the workers share no local disk; "
                         "give a gs:// path")
    args.steps = [s for step in args.steps for s in (ALL if step == "all" else (step,))]
    return args, overrides


class Tpu:
    """`gcloud compute tpus` commands for one TPU VM."""

    def __init__(self, args: argparse.Namespace, run: Runner):
        self.args, self.run = args, run
        self.where = [f"--zone={args.zone}"] + ([f"--project={args.project}"]
                                                if args.project else [])

    def ssh(self, command: str, worker: str = "all") -> None:
        self.run(["gcloud", "compute", "tpus", "tpu-vm", "ssh", self.args.name, *self.where,
                  f"--worker={worker}", f"--command={command}"])

    def create(self) -> None:
        a = self.args
        if a.queued:
            self.run(["gcloud", "compute", "tpus", "queued-resources", "create", a.name,
                      f"--node-id={a.name}", *self.where, f"--accelerator-type={a.accelerator_type}",
                      f"--runtime-version={a.version}", *(["--spot"] if a.spot else [])])
            self._wait_active()
        else:
            self.run(["gcloud", "compute", "tpus", "tpu-vm", "create", a.name, *self.where,
                      f"--accelerator-type={a.accelerator_type}", f"--version={a.version}",
                      *(["--spot"] if a.spot else [])])

    def _wait_active(self) -> None:
        describe = ["gcloud", "compute", "tpus", "queued-resources", "describe", self.args.name,
                    *self.where, "--format=value(state.state)"]
        if self.run.dry_run:
            self.run(describe)  # a real run repeats it until ACTIVE
            return
        while True:
            state = subprocess.run(describe, check=True, capture_output=True,
                                   text=True).stdout.strip()
            print(f"queued resource {self.args.name}: {state}", file=sys.stderr, flush=True)
            if state == "ACTIVE":
                return
            if state in ("FAILED", "SUSPENDED"):
                sys.exit(f"queued resource {self.args.name} is {state}")
            time.sleep(self.args.poll_seconds)

    def install(self) -> None:
        a = self.args
        if a.install_spec:
            self.ssh(f"pip install {shlex.quote(a.install_spec)}")
            return
        archive = f"/tmp/vtlearn-{a.name}.tar.gz"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.run(["git", "-C", root, "archive", "--format=tar.gz", f"--output={archive}",
                  "HEAD"])
        self.run(["gcloud", "compute", "tpus", "tpu-vm", "scp", archive,
                  f"{a.name}:/tmp/vtlearn.tar.gz", *self.where, "--worker=all"])
        self.ssh(f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR} && "
                 f"tar -xzf /tmp/vtlearn.tar.gz -C {REMOTE_DIR} && "
                 f"cd {REMOTE_DIR} && pip install -e '.[tpu]'")

    def unlock(self) -> None:
        self.ssh(UNLOCK)

    def train(self, overrides: list[str]) -> None:
        a = self.args
        command = shlex.join(training_command(a.config, a.workdir, overrides, "python3"))
        self.ssh(f"cd {REMOTE_DIR} && nohup {command} > ~/vtlearn-{a.name}.log 2>&1 &")

    def logs(self) -> None:
        self.ssh(f"tail -n +1 -f ~/vtlearn-{self.args.name}.log", worker="0")

    def fetch(self) -> None:
        out = os.path.join("logs", self.args.name)
        if not self.run.dry_run:
            os.makedirs(out, exist_ok=True)
        self.run(["gcloud", "compute", "tpus", "tpu-vm", "scp",
                  f"{self.args.name}:~/vtlearn-{self.args.name}.log", out, *self.where,
                  "--worker=all"])

    def delete(self) -> None:
        a = self.args
        if a.queued:
            self.run(["gcloud", "compute", "tpus", "queued-resources", "delete", a.name,
                      *self.where, "--force", "--quiet"])
        else:
            self.run(["gcloud", "compute", "tpus", "tpu-vm", "delete", a.name, *self.where,
                      "--quiet"])


def main(argv: list[str] | None = None) -> None:
    launch(parse(sys.argv[1:] if argv is None else argv))


def launch(parsed: tuple[argparse.Namespace, list[str]]) -> None:
    args, overrides = parsed
    tpu = Tpu(args, Runner(args.dry_run))
    for step in args.steps:
        if step == "train":
            tpu.train(overrides)
        else:
            getattr(tpu, step)()


if __name__ == "__main__":
    cli.run(parse, launch)
