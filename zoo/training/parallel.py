"""Devices on JAX's own runtime: a named device mesh (`parallel.mesh`: `data`, `fsdp`, `tensor`
and any more axes), and multi-host set-up.

Every global batch is sharded along `data` and `fsdp`; the state is replicated (data parallel,
`parallel=dp`) or split by path rules (zoo.training.sharding). XLA inserts the collectives (the
mean of the loss and of the gradients, the gathers of sharded parameters) from these shardings.
With several processes (hosts) the mesh spans all of them: each process holds the same data and
its share of the state, computes the same global batch indices on its devices, and its devices
gather only their own slice of every batch.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.config.parallel_settings import DATA, FSDP, MESH_AXES
from zoo.errors import ZooError

log = logging.getLogger(__name__)

BATCH_AXES = (DATA, FSDP)  # a batch is split over both: FSDP is data parallel on the batch


def cluster_env() -> str | None:
    """The multi-process launcher this process runs under (srun or mpirun with more than one
    task), from which `jax.distributed.initialize()` reads its set-up; None when there is none."""
    env = os.environ
    if "SLURM_STEP_NODELIST" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "Open MPI"
    return None


def initialize_distributed(
    enabled: bool | None,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join the other processes of a multi-host run; call before any JAX computation.

    `enabled=None` joins when a SLURM or Open MPI launch with several tasks is detected; the
    arguments left None are detected by JAX from that environment.
    """
    detected = cluster_env()
    if enabled is False or (enabled is None and detected is None):
        return
    if jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    except (RuntimeError, ValueError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ZooError(
            f"trainer.distributed: jax.distributed.initialize() failed ({reason}); outside "
            "SLURM/Open MPI set trainer.coordinator_address, trainer.num_processes and "
            "trainer.process_id"
        ) from None
    log.info(
        "distributed: process %d of %d (%s)",
        jax.process_index(),
        jax.process_count(),
        detected or "explicit coordinator",
    )


def local_devices() -> list[jax.Device]:
    """This process's devices on JAX's backend. When the backend asked for (`JAX_PLATFORMS`, e.g.
    `cuda`) cannot start, ZooError says so in one line: no silent fall-back to the CPU."""
    try:
        return jax.local_devices()
    except (RuntimeError, AssertionError) as err:
        # JAX raises a RuntimeError naming the backend, or (cuda without a visible NVIDIA GPU)
        # a bare AssertionError.
        asked = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        reason = reason.split(" (set JAX_PLATFORMS=")[0].rstrip(".") or "no such device visible"
        raise ZooError(
            f"JAX_PLATFORMS={asked} asks for a backend JAX cannot start ({reason}); for NVIDIA "
            "GPUs: make install ACCEL=cuda12 (README: GPUs), or unset JAX_PLATFORMS"
        ) from None


def make_mesh(devices: str | int = "auto", axes: dict[str, int] | None = None) -> Mesh:
    """A mesh over the first `devices` local devices of every process ("auto": all of them),
    with named `axes` (axis -> size, one of them -1 for the devices left; default: all on
    `data`). ZooError, before anything is allocated, when the sizes do not fit the devices."""
    local = local_devices()
    if devices == "auto":
        per_process = len(local)
    else:
        per_process = int(devices)
        if per_process > len(local):
            raise ZooError(
                f"trainer.devices={devices} but this process sees only {len(local)} "
                f"{local[0].platform} device(s); use trainer.devices=auto or a smaller number"
            )
    chosen = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    by_process: dict[int, list[jax.Device]] = {}
    for device in chosen:
        by_process.setdefault(device.process_index, []).append(device)
    mesh_devices = [d for group in by_process.values() for d in group[:per_process]]
    sizes = mesh_sizes(axes or {DATA: -1}, len(mesh_devices), len(by_process))
    return Mesh(np.array(mesh_devices).reshape(tuple(sizes.values())), tuple(sizes))


def mesh_sizes(axes: dict[str, int], count: int, processes: int = 1) -> dict[str, int]:
    """`axes` with -1 filled in and the zoo's axes (`data`, `fsdp`, `tensor`) added as 1 where
    missing, in that order then the others; ZooError when the product is not `count`."""
    sizes = {name: int(axes.get(name, 1)) for name in MESH_AXES}
    sizes |= {name: int(size) for name, size in axes.items() if name not in sizes}
    known = math.prod(size for size in sizes.values() if size != -1)
    shown = ", ".join(f"{name}: {size}" for name, size in sizes.items())
    where = f"{count} device(s)" + (f" in {processes} processes" if processes > 1 else "")
    fill = [name for name, size in sizes.items() if size == -1]
    if fill and count % known == 0:
        sizes[fill[0]] = count // known
    elif fill or known != count:
        raise ZooError(
            f"parallel.mesh={{{shown}}} does not fit the run's {where}: the sizes must "
            f"multiply to {count}" + (" (-1 takes the devices left)" if fill else "")
        )
    return sizes


def replicated(mesh: Mesh) -> NamedSharding:
    """The same whole array on every device of the mesh (parameters, optimizer state, data)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a batch is split over: `data` and `fsdp` (those the mesh has)."""
    return tuple(axis for axis in BATCH_AXES if axis in mesh.axis_names)


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Split along the leading (batch) axis over the mesh's `data` and `fsdp` axes."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    parts = math.prod(mesh.shape[axis] for axis in batch_axes(mesh))
    if batch_size % parts == 0:
        return
    if parts == mesh.size:
        raise ZooError(
            f"trainer.batch_size={batch_size} does not divide evenly over {mesh.size} devices; "
            f"use a multiple of {mesh.size}, or set trainer.devices"
        )
    raise ZooError(
        f"trainer.batch_size={batch_size} does not divide evenly over the {parts} batch "
        f"shards of parallel.mesh (data x fsdp); use a multiple of {parts}"
    )


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: lay a batch out along the `data` and `fsdp` axes, each its own slice."""
    return jax.lax.with_sharding_constraint(tree, batch_sharded(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Global arrays replicated over `mesh` from each process's own (identical) copy of `tree`."""
    sharding = replicated(mesh)

    def put(leaf: Any) -> jax.Array:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(put(jax.random.key_data(leaf)), impl=impl)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(put, tree)


def put_global(tree: Any, shardings: Any) -> Any:
    """`tree` laid out by `shardings` (a tree of NamedShardings over the same structure) from
    each process's own (identical) copy: an array already laid out so stays as it is; others
    are sliced on the host, each device receiving only its own shard."""

    def put(leaf: Any, sharding: NamedSharding) -> jax.Array:
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if sharding.is_fully_replicated:
            return replicate(leaf, sharding.mesh)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, shardings)


def describe(mesh: Mesh) -> str:
    """How many devices of which platform and kind in how many processes, and JAX's backend,
    for the run's log: `data parallel over 1 gpu device(s) (backend cuda: NVIDIA H100 ...)`."""
    device = mesh.devices.flat[0]
    processes = jax.process_count()
    where = f" in {processes} processes" if processes > 1 else ""
    split = {name: size for name, size in mesh.shape.items() if name != DATA and size > 1}
    how = (
        f"mesh {' '.join(f'{k}={v}' for k, v in mesh.shape.items())}" if split else "data parallel"
    )
    return (
        f"{how} over {mesh.size} {device.platform} device(s){where} "
        f"(backend {jax.default_backend()}: {device.device_kind})"
    )


def gpu_left_unused(mesh: Mesh) -> bool:
    """Whether the run is on CPUs while the machine shows an NVIDIA GPU (its device files): the
    usual cause is a jaxlib without JAX's CUDA plugin."""
    return mesh.devices.flat[0].platform == "cpu" and bool(glob.glob("/dev/nvidia[0-9]*"))
