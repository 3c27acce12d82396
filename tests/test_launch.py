"""The launch scripts' dry runs: the exact gcloud / sbatch commands, checked
field by field, and every shell command they would run parsed by bash."""

import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


def _dry_run(script: str, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, str(ROOT / "launch" / script), "--dry_run", *args],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return out.stdout.splitlines()


def _bash_parses(command: str) -> None:
    subprocess.run(["bash", "-n", "-c", command], check=True)


def _remote(line: str) -> tuple[list[str], str]:
    """(gcloud argv, the --command it runs on the workers)."""
    argv = shlex.split(line)
    (command,) = [a.split("=", 1)[1] for a in argv if a.startswith("--command=")]
    return argv, command


def test_tpu_pod_job_from_queued_spot_capacity_to_logs():
    lines = _dry_run("tpu.py", "all", "--name=milnce-pod", "--zone=us-central2-b",
                     "--project=my-proj", "--accelerator_type=v4-32", "--queued", "--spot",
                     "--config=configs/milnce_s3d.py", "--workdir=gs://bucket/runs/milnce",
                     "--", "--config.train.num_steps=1000", "--config.seed=3")
    create, describe, archive, scp, install, unlock, train, logs = map(shlex.split, lines)
    assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert {"milnce-pod", "--node-id=milnce-pod", "--zone=us-central2-b", "--project=my-proj",
            "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base",
            "--spot"} <= set(create)
    assert describe[3:5] == ["queued-resources", "describe"]
    assert archive[:2] == ["git", "-C"] and archive[3] == "archive" and archive[-1] == "HEAD"
    assert scp[3:5] == ["tpu-vm", "scp"] and "--worker=all" in scp
    for line in (install, unlock, train):
        assert line[3:6] == ["tpu-vm", "ssh", "milnce-pod"] and "--worker=all" in line
    for line in lines[4:]:
        _bash_parses(_remote(line)[1])
    assert "pip install -e '.[tpu]'" in _remote(lines[4])[1]
    assert "/tmp/libtpu_lockfile" in _remote(lines[5])[1]
    command = _remote(lines[6])[1]
    assert "nohup python3 -m vtlearn.main --config=configs/milnce_s3d.py " \
           "--workdir=gs://bucket/runs/milnce --distributed --config.train.num_steps=1000 " \
           "--config.seed=3 > ~/vtlearn-milnce-pod.log" in command
    assert "--worker=0" in logs and "tail -n +1 -f ~/vtlearn-milnce-pod.log" in _remote(lines[7])[1]


def test_tpu_single_steps_on_demand():
    create, fetch, delete = map(shlex.split, _dry_run(
        "tpu.py", "create", "fetch", "delete", "--name=t", "--zone=europe-west4-a",
        "--accelerator_type=v5litepod-8", "--version=v2-alpha-tpuv5-lite"))
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "t"]
    assert "--version=v2-alpha-tpuv5-lite" in create and "--spot" not in create
    assert fetch[3:5] == ["tpu-vm", "scp"] and fetch[5] == "t:~/vtlearn-t.log"
    assert delete[3:6] == ["tpu-vm", "delete", "t"] and "--quiet" in delete


def test_tpu_refuses_a_local_workdir_before_touching_a_cloud():
    out = subprocess.run([sys.executable, str(ROOT / "launch" / "tpu.py"), "train",
                          "--name=t", "--zone=z", "--workdir=/tmp/run", "--dry_run"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "give a gs:// path" in out.stderr and not out.stdout


def test_slurm_multi_node_job_runs_one_task_per_gpu(tmp_path):
    lines = _dry_run("slurm.py", "--name=mcn", "--nodes=4", "--gpus_per_node=8",
                     "--partition=a100", "--time=48:00:00", "--config=configs/mcn.py",
                     "--workdir=/shared/runs/mcn", "--", "--config.train.batch_size=4096")
    assert lines[0] == "# logs/mcn.sbatch:" and lines[-1] == "sbatch logs/mcn.sbatch"
    script = "\n".join(line[len("# | "):] for line in lines[1:-1])
    for directive in ("--job-name=mcn", "--nodes=4", "--ntasks-per-node=8",
                      "--gpus-per-task=1", "--partition=a100", "--time=48:00:00"):
        assert f"#SBATCH {directive}\n" in script
    assert ("srun --kill-on-bad-exit=1 python -m vtlearn.main --config=configs/mcn.py "
            "--workdir=/shared/runs/mcn --distributed --config.train.batch_size=4096") in script
    (tmp_path / "job.sbatch").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")], check=True)


def test_single_node_gpus_run_as_one_process():
    (line,) = _dry_run("slurm.py", "--name=x", "--local", "--workdir=runs/x",
                       "--config=configs/vttwins_s3d.py")
    assert shlex.split(line) == ["python", "-m", "vtlearn.main",
                                 "--config=configs/vttwins_s3d.py", "--workdir=runs/x"]


@pytest.mark.parametrize("script", ["tpu.py", "slurm.py"])
def test_help_describes_the_script(script):
    out = subprocess.run([sys.executable, str(ROOT / "launch" / script), "--help"],
                         check=True, capture_output=True, text=True)
    assert "--dry_run" in out.stdout
