"""The one training loop every method shares: `train_and_evaluate(config, workdir)`.

mesh -> input -> state (init or resume) -> jitted step -> logging,
checkpoints, periodic evaluation. Methods plug in through
`vtlearn.methods.base.Method`; nothing here is paper-specific.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vtlearn import checkpointing, metric_writers, optim, sharding
from vtlearn.data import pipeline
from vtlearn.data.sources import resolve_data
from vtlearn.evaluation import evaluator
from vtlearn.methods import get_method


HOST_KEYS = ("index",)  # batch entries the trainer keeps on the host


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


@dataclasses.dataclass
class Trainer:
    """A method, its optimizer and the jitted functions over one mesh."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh

    def __post_init__(self):
        self.method = get_method(self.config.method)(self.config, self.mesh.size)
        self.replicated = sharding.replicated(self.mesh)

    def init_state(self, batch_spec: dict[str, jax.ShapeDtypeStruct]) -> TrainState:
        """Fresh state (replicated); batch_spec gives per-example shapes."""
        return sharding.jit(self._init, static_argnums=0, out_shardings=self.replicated)(
            _frozen_spec(batch_spec))

    def abstract_state(self, batch_spec) -> TrainState:
        """Shapes/shardings of the state, for restoring without initialising."""
        shapes = jax.eval_shape(functools.partial(self._init, _frozen_spec(batch_spec)))
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

    def _init(self, spec) -> TrainState:
        n = self.mesh.size
        batch = {k: jnp.zeros((n,) + shape, dtype) for k, (shape, dtype) in spec}
        rng = jax.random.PRNGKey(self.config.seed)
        init_rng, train_rng = jax.random.split(rng)
        params, model_state = self.method.init(init_rng, batch)
        return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                          opt_state=self._optimizer(params).init(params),
                          model_state=model_state,
                          rng=train_rng, num_nonfinite=jnp.zeros([], jnp.int32))

    def _optimizer(self, params) -> optax.GradientTransformation:
        return optim.make_optimizer(self.config.optimizer, self.config.train.num_steps,
                                    self.method.trainable(params))

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        """One update; a non-finite loss/gradient leaves params unchanged."""
        return self._jit_step(state, batch)

    @property
    def _jit_step(self):
        if not hasattr(self, "_step_fn"):
            self._step_fn = sharding.jit(self._step, donate_argnums=0,
                                         out_shardings=(self.replicated, self.replicated))
        return self._step_fn

    def _step(self, state: TrainState, batch):
        tx = self._optimizer(state.params)
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            return self.method.loss(params, state.model_state, batch, rng)

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


def _frozen_spec(batch_spec) -> tuple:
    """Hashable (key, (per-example shape, dtype)) tuple for jit static args."""
    return tuple(sorted((k, (tuple(v.shape[1:]), np.dtype(v.dtype)))
                        for k, v in batch_spec.items()))


def _batch_spec(dataset) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(tuple(s.shape), s.dtype.as_numpy_dtype)
            for k, s in dataset.element_spec.items() if k not in HOST_KEYS}


def clips_per_step(config: ml_collections.ConfigDict) -> int:
    """Clips in one global batch: B, or B·n for sequence samples (VT-TWINS)."""
    per_sample = config.data.num_pairs if config.data.sampler == "sequence" else 1
    return config.train.batch_size * per_sample


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains `config.method` and evaluates it; resumes from `workdir` if possible.

    Returns:
      The last evaluation's metrics (empty if none ran).
    """
    config = resolve_data(config)
    mesh = sharding.make_mesh()
    trainer = Trainer(config, mesh)
    tc = config.train
    if tc.batch_size % jax.device_count():
        raise ValueError(f"config.train.batch_size={tc.batch_size} must be divisible by "
                         f"the {jax.device_count()} devices")
    process_batch = tc.batch_size // jax.process_count()
    skips = pipeline.SkipCounter()

    where = dict(process_index=jax.process_index(), process_count=jax.process_count())
    spec = _batch_spec(pipeline.build_train_dataset(config.data, process_batch, **where))
    ckpt = checkpointing.Checkpointer(workdir, keep=tc.keep_checkpoints,
                                      every_steps=tc.checkpoint_every)
    if ckpt.latest_step is not None:
        state, positions = ckpt.restore(trainer.abstract_state(spec))
        start_index = positions[jax.process_index()]
        logging.info("Resumed from step %d (data position %d).", ckpt.latest_step, start_index)
    else:
        state, start_index = trainer.init_state(spec), 0
    step = int(state.step)
    writer = metric_writers.MetricWriter(workdir)
    progress = metric_writers.Progress(tc.num_steps, clips_per_step(config), step)
    position = start_index
    eval_metrics: dict[str, float] = {}
    batches = pipeline.iterate_train(config.data, process_batch, start_index=start_index,
                                     skips=skips, **where)
    pending = []
    try:
        while step < tc.num_steps:
            local = next(batches)
            position = int(local["index"][-1]) + 1
            device_batch = {k: v for k, v in local.items() if k not in HOST_KEYS}
            state, metrics = trainer.train_step(state, sharding.global_batch(device_batch, mesh))
            step += 1
            pending.append(metrics)
            last = step == tc.num_steps
            preempted = ckpt.preempted(step)
            if step % tc.log_every == 0 or last or preempted:
                _log_train(writer, step, pending, progress, skips)
                pending = []
                _check_finite(state, step)
            if ckpt.should_save(step) or last or preempted:
                _check_finite(state, step)
                ckpt.save(step, state, _all_positions(position))
            if preempted:
                logging.warning("Stopping at step %d after preemption; rerun to resume.", step)
                break
            if tc.eval_every and (step % tc.eval_every == 0 or last):
                eval_metrics = evaluator.evaluate(trainer.method, state, config, mesh)
                writer.write(step, "eval", eval_metrics)
                logging.info("eval at step %d: %s", step, _fmt(eval_metrics))
    finally:
        ckpt.close()
        writer.close()
    return eval_metrics


def _log_train(writer, step, pending, progress, skips):
    means = {k: float(np.mean([float(m[k]) for m in pending])) for k in pending[-1]}
    means.update(progress.update(step))
    means["skipped_records"] = skips.count
    writer.write(step, "train", means)
    logging.info("train at step %d: %s", step, _fmt(means))


def _check_finite(state: TrainState, step: int) -> None:
    bad = int(state.num_nonfinite)
    if bad:
        raise NonFiniteError(
            f"Loss or gradient became NaN/Inf ({bad} step(s) up to step {step}); "
            "stopping without saving, the last checkpoint is the last good state.")


def _all_positions(position: int) -> list[int]:
    """Every process's data position, in process order."""
    if jax.process_count() == 1:
        return [position]
    from jax.experimental import multihost_utils

    return [int(p) for p in multihost_utils.process_allgather(np.int64(position))]


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
