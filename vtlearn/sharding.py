"""Device mesh, shardings, and moving host batches onto it.

One 1-D mesh axis, `data`, spans every device of every process. Batches are
split along their leading axis over it; parameters and optimizer state are
replicated. Losses computed under `jax.jit` on these globally sharded arrays
see the *global* batch, so in-batch negatives are gathered across all devices
by XLA; `group_leading` gives per-device groups when a method wants
per-device negatives instead.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """A mesh over all devices (all processes) with one axis, `data`."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over `data`."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles the global batch from every process's local batch.

    Args:
      local: this process's batch; numeric arrays with leading axis B_local.
        Non-numeric entries (e.g. byte-string ids) stay on the host.
      mesh: from `make_mesh`.

    Returns:
      Arrays of leading size B_local * process_count sharded over `data`.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for k, v in local.items():
        if v.dtype.kind in "OSU":
            continue
        if v.shape[0] % jax.local_device_count():
            raise ValueError(
                f"batch key {k!r}: per-process batch {v.shape[0]} is not divisible "
                f"by the {jax.local_device_count()} local devices")
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out


def group_leading(x: jax.Array, num_groups: int) -> jax.Array:
    """Reshapes [B, ...] to [num_groups, B // num_groups, ...].

    With the batch sharded over `num_groups` devices, group g is exactly
    device g's shard, so a vmapped loss over groups uses per-device negatives.
    """
    return x.reshape((num_groups, x.shape[0] // num_groups) + x.shape[1:])


def to_host(tree: Any) -> Any:
    """Fetches a (possibly multi-process sharded) pytree to NumPy on every host."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


# Longer than any compile: barriers wait for the slowest process to compile.
BARRIER_TIMEOUT_SECONDS = 3600
_BARRIER_IDS = itertools.count()  # barrier names are unique and agree across processes


def barrier(name: str, timeout_seconds: int = BARRIER_TIMEOUT_SECONDS) -> None:
    """Waits until every process has reached the barrier `name` (no-op alone).

    Runs on the coordination service of `jax.distributed`, not as a device
    collective, so it may wait far longer than a collective is allowed to
    set up (30 s for gloo on CPU). Every process must pass the same names in
    the same order.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the client jax.distributed.initialize made

    distributed.global_state.client.wait_at_barrier(name, timeout_seconds * 1000)


def jit(fn, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` whose processes start each program together.

    With several processes, each new argument signature is compiled ahead of
    its first call, then every process waits at a `barrier` before running
    it: compile times differ between hosts (by minutes on busy CPUs), and a
    collective whose peers arrive that far apart fails. With one process this
    is `jax.jit` itself.
    """
    jitted = jax.jit(fn, **jit_kwargs)
    if jax.process_count() == 1:
        return jitted
    compiled = {}
    name = getattr(fn, "__qualname__", repr(fn))
    static = jit_kwargs.get("static_argnums", ())
    static = {static} if isinstance(static, int) else set(static)

    def signature(args):
        leaves, treedef = jax.tree.flatten(args)
        return treedef, tuple(
            (x.shape, x.dtype, getattr(x, "weak_type", False), getattr(x, "sharding", None))
            if isinstance(x, (jax.Array, np.ndarray)) else x
            for x in leaves)

    def call(*args):
        key = signature(args)
        if key not in compiled:
            compiled[key] = jitted.lower(*args).compile()
            barrier(f"vtlearn/jit/{next(_BARRIER_IDS)}/{name}")
        return compiled[key](*[a for i, a in enumerate(args) if i not in static])

    return call


def use_compilation_cache() -> None:
    """Caches compiled programs in $VTLEARN_COMPILATION_CACHE (default ~/.cache/vtlearn/jax),
    so a resumed run or a later evaluation does not compile again."""
    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "VTLEARN_COMPILATION_CACHE", os.path.expanduser("~/.cache/vtlearn/jax")))
