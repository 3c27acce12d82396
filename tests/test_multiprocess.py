"""Two real JAX processes (4 CPU devices each, gloo collectives) run one job.

`python -m vtlearn.main` with `--coordinator_address/--num_processes/--process_id`
on the tiny lab (2 shards per split, so each process reads its own files):
the global batch spans both processes, process 0 alone writes metrics,
checkpoints hold both data positions, evaluation gathers both processes'
units, and a 2-process restart resumes each process at its own position.
The video tower is the feature tower (BatchNorm included), so the processes
spend their time on the multi-host machinery rather than compiling S3D-G.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vtlearn.config_defaults import load_config
from vtlearn.data import lab, pipeline

ROOT = pathlib.Path(__file__).parents[1]
TINY = lab.lab_config("tiny", num_shards=(2, 2, 2))

# The processes' compile times drift apart by minutes on 2 busy cores; gloo
# gives a collective 30 s to set up, so `sharding.jit` waits at a barrier of
# the coordination service after compiling (without it this failed 2 of 4 runs).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_job(workdir, lab_data, cache_dir, *overrides, processes=2,
               config=f"{ROOT}/configs/milnce_s3d.py:tiny") -> list[subprocess.Popen]:
    """Starts the job's processes (2, or 1 alone), each logging to
    `<workdir>-process<i>.log` (a file, not a pipe: a pipe nobody reads would
    block a process that logs a lot)."""
    port = _free_port()
    distributed = ([f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}"]
                   if processes > 1 else [])
    env = dict(os.environ, JAX_PLATFORMS="cpu", VTLEARN_COMPILATION_CACHE=str(cache_dir),
               XLA_FLAGS="--xla_force_host_platform_device_count=4 "
                         "--xla_backend_optimization_level=0")
    common = [
        sys.executable, "-m", "vtlearn.main", f"--config={config}",
        f"--workdir={workdir}", *distributed, "--config.data.lab=",
        "--config.data.train_files=" + ",".join(map(str, lab_data.train_files)),
        "--config.data.eval_files=" + ",".join(map(str, lab_data.test_files)),
        "--config.data.probe_files=" + ",".join(map(str, lab_data.train_files)),
        f"--config.data.vocab_path={lab_data.vocab_path}",
        "--config.train.checkpoint_every=2", "--config.evals.probe.every=0",
        "--config.model.video.name=features", "--config.data.video=False",
        f"--config.data.features_2d={TINY.features_2d}",
        f"--config.data.features_3d={TINY.features_3d}",
        *overrides,
    ]
    procs = []
    for i in range(processes):
        log = pathlib.Path(f"{workdir}-process{i}.log")
        with open(log, "w") as out:
            procs.append(subprocess.Popen(common + [f"--process_id={i}"] * (processes > 1),
                                          env=env, cwd=ROOT, stdout=out,
                                          stderr=subprocess.STDOUT))
        procs[-1].log = log
    return procs


def _run_job(*args, **kwargs):
    """Runs both processes to completion; returns their logs."""
    return _finish(_start_job(*args, **kwargs))


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    """Waits for the processes; their logs, each having exited with 0. A process
    that fails ends the wait at once (its peer could wait for it forever)."""
    try:
        while any(proc.poll() is None for proc in procs):
            for i, proc in enumerate(procs):
                assert proc.poll() in (None, 0), \
                    f"process {i} failed:\n{_excerpt(proc.log.read_text())}"
            time.sleep(0.2)
        logs = [proc.log.read_text() for proc in procs]
        for i, proc in enumerate(procs):
            assert proc.returncode == 0, f"process {i} failed:\n{_excerpt(logs[i])}"
    finally:
        for proc in procs:
            proc.kill()
    return logs


def _restore_here(path):
    """A checkpoint the 2-process job saved, onto this process's first device."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    tree = checkpointer.metadata(path)
    tree = getattr(getattr(tree, "item_metadata", tree), "tree", tree)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return checkpointer.restore(path, jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), tree,
        is_leaf=lambda x: hasattr(x, "shape")))


def _excerpt(log: str) -> str:
    """Error lines and the tail of a log, without the fatal-error module list."""
    lines = [x for x in log.splitlines() if not x.startswith("Extension modules:")]
    errors = [x for x in lines if any(w in x for w in ("Error", "Fatal", "Check failed",
                                                       "terminate", "abort"))]
    return "\n".join(errors[:20] + ["..."] + lines[-40:])


def _query_texts(lab_data, process_index):
    """The distinct retrieval queries (token ids) of one process's eval files."""
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.update(lab="", eval_files=",".join(map(str, lab_data.test_files)),
                       vocab_path=str(lab_data.vocab_path))
    batches = pipeline.iterate_eval(config.data, 8, process_index=process_index,
                                    process_count=2)
    return {tuple(ids) for b in batches for ids in b["text"][:, 0][b["valid"].astype(bool)]}


@pytest.mark.slow
def test_two_processes_train_checkpoint_evaluate_and_resume(tmp_path):
    lab_data = lab.generate_lab(TINY, tmp_path / "lab")
    workdir, cache = tmp_path / "run", tmp_path / "jax_cache"

    logs = _run_job(workdir, lab_data, cache, "--config.train.num_steps=2",
                    "--config.evals.retrieval.every=2")
    for log in logs:
        assert "2 process(es), 8 device(s)" in log, log[-3000:]
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()] == ["2"]
    positions = json.loads((workdir / "checkpoints/2/data/metadata").read_text())["positions"]
    # Each process read 4 samples per step from its own shard (indices from 0).
    assert len(positions) == 2 and all(p >= 8 for p in positions)
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "train"] == [2]  # process 0 only
    (evaluation,) = [x for x in lines if x["split"] == "eval"]
    # Test videos live in 2 shards, one per process: both processes' queries are scored.
    queries = [_query_texts(lab_data, process) for process in range(2)]
    assert evaluation["retrieval/num_queries"] == len(queries[0] | queries[1])
    assert queries[0] != queries[1]  # the union is not what one process alone sees

    logs = _run_job(workdir, lab_data, cache, "--config.train.num_steps=3",
                    "--config.evals.retrieval.every=0")
    for i, log in enumerate(logs):
        assert f"Resumed from step 2 (data position {positions[i]})" in log, log[-3000:]
    assert (workdir / "checkpoints/3").is_dir()


@pytest.mark.slow
def test_two_processes_share_a_benchmark_conversion_and_all_its_videos(tmp_path):
    """Process 0 converts the benchmark's videos while process 1 waits; each then
    embeds its own shard, and the metrics cover every video."""
    from vtlearn.data import lab_exports

    lab_data = lab.generate_lab(TINY, tmp_path / "lab")
    data_dir = lab_exports.export(TINY, "crosstask", tmp_path / "crosstask")
    config_file = tmp_path / "with_crosstask.py"
    config_file.write_text(
        "from vtlearn.config_defaults import load_config\n"
        "from vtlearn.evaluation.base import section\n\n\n"
        "def get_config():\n"
        f"    config = load_config('{ROOT}/configs/milnce_s3d.py:tiny')\n"
        f"    config.evals.ct = section('crosstask', every=2, data_dir='{data_dir}',\n"
        f"                              features_dir='{data_dir.parent / 'features'}',\n"
        f"                              cache_dir='{tmp_path / 'benchmarks'}')\n"
        "    return config\n")
    workdir = tmp_path / "run"
    _run_job(workdir, lab_data, tmp_path / "jax_cache", "--config.train.num_steps=2",
             "--config.evals.retrieval.every=0", config=config_file)
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [x for x in lines if x["split"] == "eval"]
    videos = (data_dir / "videos_val.csv").read_text().splitlines()
    assert evaluation["ct/videos"] == len(videos) == 3
    assert len(list((tmp_path / "benchmarks").rglob("*.tfrecord"))) == 2  # one per process


@pytest.mark.slow
def test_a_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(tmp_path):
    """Only process 1 receives SIGTERM: both save the same step and stop (JAX's
    preemption sync point); the resumed run equals an uninterrupted one."""
    lab_data = lab.generate_lab(TINY, tmp_path / "lab")
    cache = tmp_path / "jax_cache"
    # A constant learning rate: a cosine one depends on num_steps, which differs here.
    quiet = ["--config.evals.retrieval.every=0", "--config.train.checkpoint_every=100000",
             "--config.train.log_every=1", "--config.optimizer.schedule=constant"]
    workdir = tmp_path / "preempted"
    procs = _start_job(workdir, lab_data, cache, "--config.train.num_steps=100000", *quiet)
    while "train at step 3:" not in procs[1].log.read_text():  # then preempt process 1
        assert procs[1].poll() is None, _excerpt(procs[1].log.read_text())
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    logs = _finish(procs)
    stops = [re.findall(r"Stopping at step (\d+) after preemption", log) for log in logs]
    assert all(len(s) == 1 for s in stops), [_excerpt(log) for log in logs]
    step = int(stops[0][0])
    assert stops[1] == [str(step)] and 3 <= step < 100000
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()] == [str(step)]

    _run_job(workdir, lab_data, cache, f"--config.train.num_steps={step + 2}", *quiet)
    straight = tmp_path / "straight"
    _run_job(straight, lab_data, cache, f"--config.train.num_steps={step + 2}", *quiet)
    a, b = (_restore_here(w / f"checkpoints/{step + 2}/state") for w in (workdir, straight))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)])
def test_a_resume_on_another_number_of_processes_restarts_the_data_order(
        tmp_path, before, after):
    """Saved positions belong to one process's files: on another number of
    processes the data order starts afresh, with a warning, never with the
    wrong positions; the state itself resumes."""
    lab_data = lab.generate_lab(TINY, tmp_path / "lab")
    workdir, cache = tmp_path / "run", tmp_path / "jax_cache"
    quiet = ["--config.evals.retrieval.every=0"]
    _run_job(workdir, lab_data, cache, "--config.train.num_steps=2", *quiet, processes=before)
    assert (workdir / f"data_state/2/process_0-of-{before}").is_dir()
    logs = _run_job(workdir, lab_data, cache, "--config.train.num_steps=3", *quiet,
                    processes=after)
    for log in logs:
        assert (f"saved by {before} process(es) and is resumed on {after}: their data "
                "positions do not carry over, so the data order starts afresh (seed offset "
                "2)") in log, _excerpt(log)
        assert "Resumed from step 2 (data position 0)" in log
    data = json.loads((workdir / "checkpoints/3/data/metadata").read_text())
    assert len(data["positions"]) == after and data["seed_offset"] == 2
    assert sorted(p.name for p in (workdir / "data_state").iterdir()) == ["2", "3"]
    assert sorted(p.name for p in (workdir / "data_state/3").iterdir()) == [
        f"process_{i}-of-{after}" for i in range(after)]
