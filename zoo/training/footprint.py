"""How much memory a run needs, estimated from shapes before anything is allocated, and one line
when it cannot fit in this machine's (or a device's) free memory.

The estimate counts what a run certainly holds: the parameters, their gradients and the
optimizer state (from `nnx.eval_shape` and `jax.eval_shape(tx.init, ...)`: shapes only), the
data, a batch with roughly its activations (each layer's outputs, kept for the backward pass),
and the schedule of log points. XLA needs some more for its temporaries, so a run that passes can
still fail at the edge; the point is that a size off by orders of magnitude (a width of 10^9, a
batch of 10^11) is one line in a moment instead of an out-of-memory crash minutes later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
from flax import nnx

from zoo import memory
from zoo.errors import ZooError
from zoo.memory import human, nbytes

# Bytes a log point costs on the host: a Python int in the schedule's set and list.
LOG_POINT_BYTES = 100
# The activations of a batch are kept once for the backward pass, and their gradients once.
ACTIVATION_COPIES = 2


def activations_per_position(params: Any) -> int:
    """Roughly how many values a forward pass produces per example position: each kernel's
    outputs (a kernel `(..., in, out)` makes `out` values per layer stacked in front)."""
    return sum(
        math.prod(leaf.shape) // leaf.shape[-2]
        for leaf in jax.tree.leaves(params)
        if len(leaf.shape) >= 2 and leaf.shape[-2]
    )


def log_point_count(steps: int, *everies: int) -> int:
    """An upper bound on `len(log_points(steps, *everies))`, by arithmetic."""
    return min(steps, sum(steps // every for every in everies)) + 1


@dataclass(frozen=True)
class TrainingEstimate:
    """Bytes a training run holds. The data is replicated on every device, the state too unless
    it is sharded; the batch is split over them."""

    state: int  # parameters, their gradients, the optimizer state (per device when sharded)
    data: int  # train and validation arrays
    batch: int  # a batch's inputs and targets, and its activations
    schedule: int  # host only: the log points

    def per_device(self, devices: int) -> int:
        return self.state + self.data + -(-self.batch // devices)

    def describe(self) -> str:
        parts = {"state": self.state, "data": self.data, "batch": self.batch}
        if self.schedule >= 1 << 20:
            parts["log points"] = self.schedule
        return ", ".join(f"{name} {human(size)}" for name, size in parts.items())


def training_estimate(
    params: Any,
    opt_state: Any,
    data_arrays: Sequence[Any],
    batch_size: int,
    *,
    positions: int = 1,
    log_points: int = 0,
) -> TrainingEstimate:
    """The estimate from shapes alone: `params` and `opt_state` abstract (`nnx.eval_shape`,
    `jax.eval_shape(tx.init, params)`), `data_arrays` (x, y, x_val, y_val; arrays or shapes),
    `positions` per example (the sequence length for token inputs, else 1)."""
    x, y = data_arrays[0], data_arrays[1]
    per_row = nbytes(x) // max(_rows(x), 1) + nbytes(y) // max(_rows(y), 1)
    activations = activations_per_position(params) * positions * 4 * ACTIVATION_COPIES
    return TrainingEstimate(
        state=2 * nbytes(params) + nbytes(opt_state),  # parameters and their gradients
        data=nbytes(list(data_arrays)),
        batch=batch_size * (per_row + 4 + activations),  # + its int32 row index
        schedule=log_points * LOG_POINT_BYTES,
    )


def _rows(array: Any) -> int:
    return int(array.shape[0]) if array.shape else 1


def device_available(device: Any) -> int | None:
    """Free bytes on an accelerator, or None where the device shares the host's memory (CPU)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def require_training_fits(
    estimate: TrainingEstimate, devices: Iterable[Any], resident: dict[Any, int] | None = None
) -> None:
    """Raise a ZooError with the estimate when the run cannot fit: on each accelerator its state,
    data and share of the batch; on the host everything CPU devices hold (each a replica) and the
    schedule of log points. `resident`: bytes of the estimate a device holds already (the data
    arrays), which its free memory no longer counts."""
    devices = list(devices)
    on_host = [d for d in devices if device_available(d) is None]
    for device in devices:
        free = device_available(device)
        if free is not None:
            free += (resident or {}).get(device, 0)
        need = estimate.per_device(len(devices))
        if free is not None and need > free:
            raise ZooError(
                f"this run needs about {human(need)} on {device.platform}:{device.id} "
                f"({estimate.describe()}), but it has {human(free)} free: make the model, "
                "trainer.batch_size or the data smaller"
            )
    need = estimate.schedule + (
        len(on_host) * (estimate.state + estimate.data) + estimate.batch if on_host else 0
    )
    free = memory.host_available()
    if need > free:
        raise ZooError(
            f"this run needs about {human(need)} of memory ({estimate.describe()}), but this "
            f"machine has {human(free)} free: make the model, trainer.batch_size, the data or "
            "the number of log points smaller"
        )


def check_training_fits(
    abstract_model: Any,
    tx: Any,
    data: Any,
    batch_size: int,
    devices: Iterable[Any],
    *,
    log_points: int = 0,
    state_bytes: int | None = None,
) -> TrainingEstimate:
    """`training_estimate` for an abstract model (from `nnx.eval_shape`), an optax optimizer and
    a Dataset, checked against `devices`; returns the estimate. `state_bytes`: what each device
    holds of the parameters, their gradients and the optimizer state when they are sharded
    (zoo.training.sharding); None: all of it (replicated)."""
    params = nnx.state(abstract_model, nnx.Param)
    positions = int(data.x_train.shape[1]) if data.vocab_size is not None else 1
    estimate = training_estimate(
        params,
        jax.eval_shape(tx.init, params),
        data.arrays(),
        batch_size,
        positions=positions,
        log_points=log_points,
    )
    if state_bytes is not None:
        estimate = replace(estimate, state=state_bytes)
    devices = list(devices)
    resident = {
        device: sum(nbytes(a) for a in data.arrays() if device in getattr(a, "devices", set)())
        for device in devices
    }
    require_training_fits(estimate, devices, resident)
    return estimate
