"""What a run is made of, shared by the code that builds it and the loop that runs it: the
`TrainState` of arrays every step hands on, and the prepared `Run` around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import optax
from flax import nnx

from zoo.data.dataset import Dataset

if TYPE_CHECKING:
    from zoo.training.sharding import Placement
    from zoo.weights.load import LoadReport


class TrainState(NamedTuple):
    """Everything the rest of a run depends on, as arrays."""

    params: nnx.State  # nnx.Param variables
    rest: nnx.State  # every other variable (e.g. RNG counters for dropout)
    opt_state: optax.OptState
    step: jax.Array
    data_key: jax.Array
    ema: nnx.State | None = None  # with trainer.ema: the moving average of `params`


def weights(state: TrainState) -> nnx.State:
    """The parameters a run validates and saves: the moving average when it keeps one."""
    return state.params if state.ema is None else state.ema


@dataclass(frozen=True)
class Run:
    """A prepared run: the model split once, its jitted steps, its data and starting state."""

    name: str
    kwargs: dict[str, Any]
    model: nnx.Module
    data: Dataset
    tx: optax.GradientTransformation
    state: TrainState  # the state at step 0; the loop hands back each new one
    train_chunk: Callable
    evaluate: Callable
    batch_size: int
    steps: int
    log_every: int
    eval_every: int
    init_report: LoadReport | None = None  # what init.from loaded; None: fresh weights
    accumulate: int = 1  # batches whose gradients each update averages
    placement: Placement | None = None  # each parameter's sharding (sharding.json)
