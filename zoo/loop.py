"""The training loop: pure jitted steps on arrays, several fused into one dispatch.

Steps between two log points are fused into one `lax.scan` dispatch; batches are sampled on the
device from `fold_in(data_key, step)`, so the data order depends only on the seed and the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from zoo import parallel
from zoo.errors import Diverged
from zoo.gradients import accumulated
from zoo.losses import loss_and_metrics

if TYPE_CHECKING:
    from zoo.build import Run


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


def make_steps(
    graphdef: nnx.GraphDef,
    eval_graphdef: nnx.GraphDef,
    tx,
    task: str,
    batch_size: int,
    mesh: Mesh,
    *,
    learning_rate: optax.Schedule | None = None,
    accumulate: int = 1,
    ema: float | None = None,
):
    """Jitted `train_chunk(state, x, y, length)` and `evaluate(params, rest, x, y)`.

    Both return arrays replicated over `mesh`; each batch is split over its `data` axis. Each
    update averages the gradients of `accumulate` batches; with `ema` (a decay), the state's
    `ema` follows the parameters. `learning_rate` (the optimizer's schedule) gives the chunk's
    last learning rate, for the log."""

    def batch_grads(x, y, params, rest, idx):
        xb, yb = parallel.shard_batch((x[idx], y[idx]), mesh)

        def compute_loss(params):
            # copy: Variables of this trace, so stateful layers (dropout's RNG counters, also
            # inside nnx.scan) may update them under value_and_grad.
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss, _ = loss_and_metrics(task, model(xb), yb)
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        (loss, rest), grads = jax.value_and_grad(compute_loss, has_aux=True)(params)
        return rest, loss, grads

    def train_step(x, y, state: TrainState, _):
        key = jax.random.fold_in(state.data_key, state.step)
        if accumulate == 1:
            idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
            rest, loss, grads = batch_grads(x, y, state.params, state.rest, idx)
        else:  # the same draw as one batch of accumulate * batch_size, in micro-batches
            indices = jax.random.randint(key, (accumulate, batch_size), 0, x.shape[0])
            one = partial(batch_grads, x, y, state.params)
            rest, loss, grads = accumulated(one, state.params, state.rest, indices)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        average = None if ema is None else optax.incremental_update(params, state.ema, 1 - ema)
        return TrainState(params, rest, opt_state, state.step + 1, state.data_key, average), loss

    replicated = parallel.replicated(mesh)

    @partial(jax.jit, static_argnames="length", donate_argnums=0, out_shardings=replicated)
    def train_chunk(state: TrainState, x, y, length: int):
        """`length` steps; the mean loss, the number of steps before the first non-finite loss
        (`length` if none), whether the parameters are all finite and the learning rate of the
        last step (NaN without a schedule)."""
        state, losses = jax.lax.scan(partial(train_step, x, y), state, length=length)
        finite = jnp.isfinite(losses)
        finite_steps = jnp.where(finite.all(), length, jnp.argmin(finite))
        leaves = jax.tree.leaves(state.params)
        params_finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in leaves]))
        lr = jnp.nan if learning_rate is None else learning_rate(state.step - 1)
        return state, losses.mean(), finite_steps, params_finite, jnp.asarray(lr, jnp.float32)

    @partial(jax.jit, out_shardings=replicated)
    def evaluate(params, rest, x, y):
        model = nnx.merge(eval_graphdef, params, rest)
        loss, metrics = loss_and_metrics(task, model(x), y)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    return train_chunk, evaluate


def log_points(steps: int, *everies: int) -> list[int]:
    """Sorted steps where the loop stops to log, evaluate or save: multiples of each and the end."""
    points = {steps} if steps else set()
    for every in everies:
        points.update(range(every, steps + 1, every))
    return sorted(points)


def evaluates_at(run: Run, point: int) -> bool:
    """Whether the record at log point `point` holds validation metrics."""
    return point % run.eval_every == 0 or point == run.steps


def logged_metrics(run: Run) -> set[str]:
    """The names of the metrics a run's records hold (found without computing them)."""
    _, _, x_val, y_val = run.data.arrays()
    shapes = jax.eval_shape(run.evaluate, weights(run.state), run.state.rest, x_val, y_val)
    return {"train_loss", "lr", *shapes}


def stop_if_not_finite(record: dict[str, float], first_bad_step: int, params_finite: bool) -> None:
    """Raise Diverged (a ZooError) naming the step where training diverged, if it did."""
    bad = [k for k, v in record.items() if not math.isfinite(v)]
    if not bad and params_finite:
        return
    what = "train_loss" if "train_loss" in bad else (bad or ["the parameters"])[0]
    step = first_bad_step if what == "train_loss" else record["step"]
    raise Diverged(
        f"{what} became non-finite at step {step}: likely causes are a learning rate too high "
        "(optim.lr) or non-finite or badly scaled data; the latest checkpoint is the last good one"
    )


def run_chunks(
    run: Run, state: TrainState, points: list[int]
) -> Iterator[tuple[TrainState, dict[str, float]]]:
    """From `state`, advance to each step in `points`, one fused dispatch each; yield the new
    state and the record logged there: the mean train loss since the last point, the learning
    rate of the last step, and validation metrics (of the EMA, with one) when due. Raises
    ZooError, before yielding, when a loss or the parameters became non-finite. `state` is
    donated: use only the states handed back."""
    x, y, x_val, y_val = run.data.arrays()
    done = int(state.step)
    for point in points:
        state, *health = run.train_chunk(state, x, y, length=point - done)
        train_loss, finite_steps, params_finite, lr = jax.device_get(health)  # one host sync
        record = {"step": point, "train_loss": float(train_loss), "lr": float(lr)}
        if evaluates_at(run, point):
            metrics = run.evaluate(weights(state), state.rest, x_val, y_val)
            record |= {k: float(v) for k, v in metrics.items()}
        stop_if_not_finite(record, min(done + int(finite_steps) + 1, point), bool(params_finite))
        done = point
        yield state, record
