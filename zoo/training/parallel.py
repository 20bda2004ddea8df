"""Data parallelism on JAX's own runtime: a device mesh with one `data` axis, and multi-host set-up.

Parameters and optimizer state are replicated over the mesh and every global batch is sharded along
`data`; XLA inserts the collectives (the mean of the loss and of the gradients) from these
shardings. With several processes (hosts) the mesh spans all of them: each process holds the same
replicated state and data, computes the same global batch indices on its devices, and its devices
gather only their own slice of every batch.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.errors import ZooError

log = logging.getLogger(__name__)

DATA_AXIS = "data"


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


def make_mesh(devices: str | int = "auto") -> Mesh:
    """A 1-D mesh over the first `devices` local devices of every process ("auto": all of them)."""
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
    return Mesh(np.array(mesh_devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same whole array on every device of the mesh (parameters, optimizer state, data)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Split along the leading (batch) axis over the mesh's `data` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise ZooError(
            f"trainer.batch_size={batch_size} does not divide evenly over {mesh.size} devices; "
            f"use a multiple of {mesh.size}, or set trainer.devices"
        )


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: lay a batch out along the `data` axis, each device its own slice."""
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


def describe(mesh: Mesh) -> str:
    """How many devices of which platform and kind in how many processes, and JAX's backend,
    for the run's log: `data parallel over 1 gpu device(s) (backend cuda: NVIDIA H100 ...)`."""
    device = mesh.devices.flat[0]
    processes = jax.process_count()
    where = f" in {processes} processes" if processes > 1 else ""
    return (
        f"data parallel over {mesh.size} {device.platform} device(s){where} "
        f"(backend {jax.default_backend()}: {device.device_kind})"
    )


def gpu_left_unused(mesh: Mesh) -> bool:
    """Whether the run is on CPUs while the machine shows an NVIDIA GPU (its device files): the
    usual cause is a jaxlib without JAX's CUDA plugin."""
    return mesh.devices.flat[0].platform == "cpu" and bool(glob.glob("/dev/nvidia[0-9]*"))
