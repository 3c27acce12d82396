"""The one training loop every method shares: `train_and_evaluate(config, workdir)`.

validate config -> mesh -> evaluators -> state (init, pretrained weights,
or resume with a config check) -> jitted step -> logging, checkpoints,
evaluations. Methods plug in through `vtlearn.methods.base.Method`,
samplers through `vtlearn.data.samplers`, evaluators through
`vtlearn.evaluation`; nothing here is paper-specific.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vtlearn import checkpointing, fs, metric_writers, optim, run_config, sharding
from vtlearn.data import pipeline
from vtlearn.data.samplers import get_sampler
from vtlearn.data.sources import resolve_data
from vtlearn.evaluation import build_evaluators
from vtlearn.methods import get_method


class NonFiniteError(RuntimeError):
    """Raised when a loss or gradient became NaN/Inf."""


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the data position."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array  # uint32 [2] (raw key data, checkpointable)
    num_nonfinite: jax.Array  # steps whose update was dropped


def init_compiler_options() -> dict[str, int] | None:
    """How to compile the init program, which runs once: for compile time.

    On CPU, LLVM at level 1 instead of the default 3 compiles S3D-G's init
    1.4x faster (benchmarks/init_compile.py) and gives the same bits
    (tests/test_train.py). Other backends, and a level set in $XLA_FLAGS,
    keep theirs.
    """
    if (jax.default_backend() != "cpu"
            or "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")):
        return None
    return {"xla_backend_optimization_level": 1}


@dataclasses.dataclass
class Trainer:
    """A method, its optimizer and the jitted functions over one mesh."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh

    def __post_init__(self):
        self.method = get_method(self.config.method)(self.config, self.mesh.size)
        self.replicated = sharding.replicated(self.mesh)
        self.sample_spec = _frozen_spec(pipeline.sample_spec(self.config.data))

    def init_state(self, pretrained=None) -> TrainState:
        """Fresh state (replicated): random init, the method's own pretrained
        parts (`Method.with_pretrained`), then `pretrained` (params, model
        state) over it (`vtlearn.api.merge_pretrained`)."""
        params, model_state = sharding.jit(
            self._init_variables, static_argnums=0, out_shardings=self.replicated,
            compiler_options=init_compiler_options())(self.sample_spec)
        params = self.method.with_pretrained(params)
        if pretrained is not None:
            from vtlearn import api

            params, model_state = api.merge_pretrained((params, model_state), pretrained)
        return sharding.jit(self._make_state, out_shardings=self.replicated)(
            params, model_state)

    def abstract_state(self) -> TrainState:
        """Shapes/shardings of the state, for restoring without initialising."""
        shapes = jax.eval_shape(lambda: self._make_state(
            *self._init_variables(self.sample_spec)))
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

    def _keys(self):
        return jax.random.split(jax.random.PRNGKey(self.config.seed))  # init, train

    def _init_variables(self, spec):
        n = self.mesh.size
        batch = {k: jnp.zeros((n,) + shape, dtype) for k, (shape, dtype) in spec}
        return self.method.init(self._keys()[0], batch)

    def _make_state(self, params, model_state) -> TrainState:
        return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                          opt_state=self._optimizer(params).init(params),
                          model_state=model_state, rng=self._keys()[1],
                          num_nonfinite=jnp.zeros([], jnp.int32))

    def _optimizer(self, params) -> optax.GradientTransformation:
        return optim.make_optimizer(self.config.optimizer, self.config.train.num_steps,
                                    self.method.trainable(params))

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        """One update; a non-finite loss/gradient leaves params unchanged."""
        return self._jit_step(state, batch)

    @property
    def _jit_step(self):
        if not hasattr(self, "_step_fn"):
            self._step_fn = self.jit_train_step()
        return self._step_fn

    def jit_train_step(self):
        """A new jitted `train_step` program (state, batch) -> (state, metrics),
        the state donated (benchmarks/time_to_first_step.py compiles it afresh)."""
        return sharding.jit(self._step, donate_argnums=0,
                            out_shardings=(self.replicated, self.replicated))

    def _step(self, state: TrainState, batch):
        tx = self._optimizer(state.params)
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            return self.method.loss(params, state.model_state, batch, rng, state.step)

        (loss, (model_state, metrics)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
                  & jnp.isfinite(optax.global_norm(updates)))
        updated = state.replace(params=optax.apply_updates(state.params, updates),
                                opt_state=opt_state, model_state=model_state)
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), updated, state)
        new = new.replace(step=state.step + 1,
                          num_nonfinite=state.num_nonfinite + (~finite).astype(jnp.int32))
        lr = optim.learning_rate_schedule(self.config.optimizer, self.config.train.num_steps)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, learning_rate=lr(state.step))
        return new, metrics


def _frozen_spec(spec) -> tuple:
    """Hashable (key, (per-example shape, dtype)) tuple for jit static args."""
    return tuple(sorted((k, (tuple(shape), np.dtype(dtype))) for k, (shape, dtype)
                        in spec.items()))


def clips_per_step(config: ml_collections.ConfigDict) -> int:
    """Clips in one global batch: B times the sampler's clips per sample."""
    return config.train.batch_size * get_sampler(config.data).clips_per_sample


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the train section before anything is built; errors name the key."""
    tc = config.train
    if tc.batch_size <= 0 or tc.batch_size % jax.device_count():
        raise ValueError(f"config.train.batch_size={tc.batch_size} must be a positive "
                         f"multiple of the {jax.device_count()} devices")
    for key in ("num_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        if tc[key] <= 0:
            raise ValueError(f"config.train.{key} must be > 0, got {tc[key]}")
    for name, section in config.evals.items():
        if section.every < 0:
            raise ValueError(f"config.evals.{name}.every must be >= 0, got {section.every}")


class EvaluationLog:
    """Which evaluator last ran at which step (`workdir/evaluations.json`).

    Lets a rerun finish the evaluations a stop interrupted: an evaluation due
    at the restored step that has no entry for it runs before training goes on.
    """

    def __init__(self, workdir: str):
        self.path = fs.join(workdir, "evaluations.json")
        self.done = json.loads(fs.read_text(self.path)) if fs.exists(self.path) else {}

    def record(self, name: str, step: int) -> None:
        self.done[name] = step
        if jax.process_index() == 0:
            fs.write_text(self.path, json.dumps(self.done, indent=1, sort_keys=True))

    def pending(self, evals: ml_collections.ConfigDict, step: int, num_steps: int) -> list[str]:
        """Evaluators due at `step` that have not run at it (process 0's view)."""
        due = np.array([_due(s.every, step, num_steps) and self.done.get(name, -1) < step
                        for name, s in evals.items()], bool)
        if jax.process_count() > 1:  # every process must run the same evaluations
            from jax.experimental import multihost_utils

            due = np.asarray(multihost_utils.broadcast_one_to_all(due), bool)
        return [name for name, d in zip(evals, due) if d]


def _due(every: int, step: int, num_steps: int) -> bool:
    return bool(every) and step > 0 and (step % every == 0 or step == num_steps)


def run_evaluations(evaluators: dict, variables, step: int, writer, log=None) -> dict[str, float]:
    """Runs `evaluators`; metrics prefixed by name, written at `step`."""
    metrics: dict[str, float] = {}
    for name, evaluator in evaluators.items():
        logging.info("Evaluating %s at step %d ...", name, step)
        started = time.perf_counter()
        result = {f"{name}/{k}": v for k, v in evaluator.run(variables, step).items()}
        logging.info("%s at step %d (%.0f s): %s", name, step, time.perf_counter() - started,
                     _fmt(result))
        writer.write(step, "eval", result)
        metrics |= result
        if log is not None:
            log.record(name, step)
    return metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains `config.method` and evaluates it; resumes from `workdir` if possible.

    Before the first step the whole config is checked: the train section,
    the settings and files of every evaluator that runs during training
    (`every` > 0), and, when resuming, the config saved in `workdir`
    (`vtlearn.run_config`).

    Returns:
      The metrics of the evaluations that ran (empty if none ran).
    """
    config = resolve_data(config)
    validate(config)
    mesh = sharding.make_mesh()
    trainer = Trainer(config, mesh)
    # Those that run during training (every > 0); `python -m vtlearn.evaluate` builds any.
    evaluators = build_evaluators(trainer.method, mesh, config, workdir,
                                  [n for n, s in config.evals.items() if s.every > 0])
    tc = config.train
    process_batch = tc.batch_size // jax.process_count()
    skips = pipeline.SkipCounter()
    where = dict(process_index=jax.process_index(), process_count=jax.process_count())
    ckpt = checkpointing.Checkpointer(workdir, keep=tc.keep_checkpoints,
                                      every_steps=tc.checkpoint_every)
    writer = None
    try:
        stream = dict(start_index=0, seed_offset=0, resume_from=None)
        if ckpt.latest_step is not None:
            run_config.check(config, workdir)
            state, data = ckpt.restore_latest_good(trainer.abstract_state())
            stream = _resumed_stream(data, int(state.step), ckpt)
            logging.info("Resumed from step %d (data position %d).", int(state.step),
                         stream["start_index"])
        else:
            pretrained = None
            if config.model_init:
                from vtlearn import api

                pretrained = api.load_pretrained(config.model_init, config, trainer.method)
            logging.info("Initialising the %s model (compiling its init) ...", config.method)
            started = time.perf_counter()
            state = trainer.init_state(pretrained)
            logging.info("Initialised in %.0f s.", time.perf_counter() - started)
        if jax.process_index() == 0:
            run_config.save(config, workdir)
        step = int(state.step)
        writer = metric_writers.MetricWriter(workdir, resumed_step=step)
        evaluation_log = EvaluationLog(workdir)
        eval_metrics = run_evaluations(
            {n: evaluators[n] for n in evaluation_log.pending(config.evals, step, tc.num_steps)},
            state, step, writer, evaluation_log)
        if step >= tc.num_steps:
            logging.info("The run finished at step %d; evaluations are up to date (rerun "
                         "any with python -m vtlearn.evaluate --workdir=%s).", step, workdir)
            return eval_metrics
        start_step = step
        progress = metric_writers.Progress(tc.num_steps, clips_per_step(config), step)
        batches = pipeline.iterate_train(config.data, process_batch, skips=skips, **stream,
                                         **where)
        on_host = pipeline.host_keys(config.data)
        logging.info("Compiling the train step (the first step) ...")
        started = time.perf_counter()
        pending = []
        while step < tc.num_steps:
            local = next(batches)
            position = int(local["index"][-1]) + 1
            device_batch = {k: v for k, v in local.items() if k not in on_host}
            state, metrics = trainer.train_step(state, sharding.global_batch(device_batch, mesh))
            step += 1
            if step == start_step + 1:  # it compiled the step: not training time
                jax.block_until_ready(metrics)
                progress.restart(step)
                logging.info("First step (compile + first batch) took %.0f s.",
                             time.perf_counter() - started)
            pending.append(metrics)
            last = step == tc.num_steps
            preempted = ckpt.preempted(step)
            if step % tc.log_every == 0 or last or preempted:
                _log_train(writer, step, pending, progress, skips)
                pending = []
                _check_finite(state, step, ckpt.latest_step)
            if ckpt.should_save(step) or last or preempted:
                _check_finite(state, step, ckpt.latest_step)
                batches.save(ckpt.data_state_dir(step))
                ckpt.save(step, state, {"positions": _all_positions(position),
                                        "seed_offset": batches.seed_offset})
            if preempted:
                logging.warning("Stopping at step %d after preemption; rerun to resume.", step)
                break
            due = {n: e for n, e in evaluators.items()
                   if _due(config.evals[n].every, step, tc.num_steps)}
            if due:
                eval_metrics = run_evaluations(due, state, step, writer, evaluation_log)
                progress.restart(step)
    finally:
        ckpt.close()
        if writer is not None:
            writer.close()
    return eval_metrics


def _log_train(writer, step, pending, progress, skips):
    means = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[-1]}
    means.update(progress.update(step))
    means |= {f"skipped_chunks/{reason}": n for reason, n in skips.counts.items()}
    writer.write(step, "train", means)
    logging.info("train at step %d: %s", step, _fmt(means))


def _check_finite(state: TrainState, step: int, last_saved: int | None) -> None:
    bad = int(state.num_nonfinite)
    if bad:
        kept = ("no checkpoint was saved yet, so a rerun starts from scratch"
                if last_saved is None else
                f"the checkpoint of step {last_saved} is the last good state")
        raise NonFiniteError(
            f"Loss or gradient became NaN/Inf ({bad} step(s) up to step {step}); "
            f"stopping without saving: {kept}.")


def _resumed_stream(data: dict, step: int, ckpt: checkpointing.Checkpointer) -> dict:
    """`iterate_train` arguments that continue the saved data stream.

    The same number of processes continues it from each one's saved tf.data
    position (or, without one, skips to its sample index). Another number of
    processes cannot: each saved position belongs to one process's files, so
    the data order starts afresh (another seed offset) with a warning.
    """
    positions = data["positions"]
    if len(positions) == jax.process_count():
        return dict(start_index=positions[jax.process_index()],
                    seed_offset=data.get("seed_offset", 0),
                    resume_from=ckpt.data_state_dir(step))
    logging.warning(
        "The checkpoint of step %d was saved by %d process(es) and is resumed on %d: their "
        "data positions do not carry over, so the data order starts afresh (seed offset "
        "%d); the samples seen before may be seen again.", step, len(positions),
        jax.process_count(), step)
    return dict(start_index=0, seed_offset=step, resume_from=None)


def _all_positions(position: int) -> list[int]:
    """Every process's data position, in process order."""
    if jax.process_count() == 1:
        return [position]
    from jax.experimental import multihost_utils

    return [int(p) for p in multihost_utils.process_allgather(np.int64(position))]


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
