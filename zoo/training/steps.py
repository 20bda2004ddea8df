"""The jitted steps: the loss of each task, the gradients of one update (of one batch, or averaged
over micro-batches), and `train_chunk` / `evaluate`, pure functions of arrays.

Steps between two log points are fused into one `lax.scan` dispatch; batches are sampled on the
device from `fold_in(data_key, step)`, so the data order depends only on the seed and the step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from zoo.training import parallel
from zoo.training.state import TrainState


def loss_and_metrics(task: str, out: jax.Array, y: jax.Array) -> tuple[jax.Array, dict]:
    """Mean squared error (regression) or cross-entropy with accuracy (classification; and
    perplexity for a prediction per position, e.g. next-token language modelling), in
    float32 whatever dtype the model computes in (a bfloat16 sum of squares loses the small
    differences training needs)."""
    out = out.astype(jnp.float32)
    if task == "classification":
        loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        metrics = {"accuracy": (out.argmax(-1) == y).mean()}
        if out.ndim >= 3:  # a prediction per position: the mean over every token, exponentiated
            metrics["perplexity"] = jnp.exp(loss)
        return loss, metrics
    return jnp.mean((out - y) ** 2), {}


# (rest, batch indices) -> (new rest, loss, gradients): one batch through the model
BatchGrads = Callable[[Any, jax.Array], tuple[Any, jax.Array, Any]]


def accumulated(batch_grads: BatchGrads, params: Any, rest: Any, indices: jax.Array):
    """Mean loss and mean gradients over the micro-batches `indices[i]`, one after the other in
    a scan (memory of one micro-batch); `rest` (e.g. dropout's RNG counters) runs through them.

    With a loss that is a mean over its batch, this is the gradient of the whole batch
    `indices.reshape(-1)`, up to rounding."""

    def micro_step(carry, idx):
        rest, loss_sum, grad_sum = carry
        rest, loss, grads = batch_grads(rest, idx)
        return (rest, loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    start = (rest, jnp.zeros((), jnp.float32), zeros)
    (rest, loss_sum, grad_sum), _ = jax.lax.scan(micro_step, start, indices)
    count = jax.tree.leaves(indices)[0].shape[0]
    return rest, loss_sum / count, jax.tree.map(lambda g: g / count, grad_sum)


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
    streamed: bool = False,
    augment: Callable | None = None,
    state_shardings: Any = None,
    fused: bool = True,
):
    """Jitted `train_chunk(state, x, y, length)` and `evaluate(params, rest, x, y)`.

    `fused`: the chunk's steps run in one `lax.scan` dispatch; otherwise one jitted dispatch a
    step (the same step and outputs), for models XLA runs slower inside a loop (convolutions on
    its CPU backend: zoo.training.build.fuse_steps).

    Both return arrays replicated over `mesh`, except the state, laid out as `state_shardings`
    (a TrainState of NamedShardings; None: replicated); each batch is split over the `data` and
    `fsdp` axes. Each update averages the gradients of `accumulate` batches; with `ema` (a
    decay), the state's `ema` follows the parameters. `learning_rate` (the optimizer's schedule)
    gives the chunk's last learning rate, for the log. `streamed`: the batches come from the
    host, `x` holding each step's token windows `(length, [accumulate,] batch_size,
    positions + 1)` (inputs and, shifted by one, next-token targets) and `y` None.
    `augment(batch, step, indices)` (the data's) changes each training batch."""

    def batch_grads(x, y, step, params, rest, idx):
        xb = x[idx] if augment is None else augment(x[idx], step, idx)
        return grads_of(params, rest, xb, y[idx])

    def window_grads(params, rest, windows):
        tokens = windows.astype(jnp.int32)
        return grads_of(params, rest, tokens[..., :-1], tokens[..., 1:])

    def grads_of(params, rest, xb, yb):
        xb, yb = parallel.shard_batch((xb, yb), mesh)

        def compute_loss(params):
            # copy: Variables of this trace, so stateful layers (dropout's RNG counters, also
            # inside nnx.scan) may update them under value_and_grad.
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss, _ = loss_and_metrics(task, model(xb), yb)
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        (loss, rest), grads = jax.value_and_grad(compute_loss, has_aux=True)(params)
        return rest, loss, grads

    def train_step(x, y, state: TrainState, windows):
        key = jax.random.fold_in(state.data_key, state.step)
        if streamed and accumulate == 1:
            rest, loss, grads = window_grads(state.params, state.rest, windows)
        elif streamed:  # micro-batches: windows[i]
            one = partial(window_grads, state.params)
            rest, loss, grads = accumulated(one, state.params, state.rest, windows)
        elif accumulate == 1:
            idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
            rest, loss, grads = batch_grads(x, y, state.step, state.params, state.rest, idx)
        else:  # the same draw as one batch of accumulate * batch_size, in micro-batches
            indices = jax.random.randint(key, (accumulate, batch_size), 0, x.shape[0])
            one = partial(batch_grads, x, y, state.step, state.params)
            rest, loss, grads = accumulated(one, state.params, state.rest, indices)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        average = None if ema is None else optax.incremental_update(params, state.ema, 1 - ema)
        return TrainState(params, rest, opt_state, state.step + 1, state.data_key, average), loss

    replicated = parallel.replicated(mesh)
    chunk_out = replicated if state_shardings is None else (state_shardings, *[replicated] * 4)

    def health(state: TrainState, losses: jax.Array):
        """The mean loss, the number of steps before the first non-finite loss (all of them if
        none), whether the parameters are all finite and the learning rate of the last step (NaN
        without a schedule)."""
        finite = jnp.isfinite(losses)
        finite_steps = jnp.where(finite.all(), losses.shape[0], jnp.argmin(finite))
        leaves = jax.tree.leaves(state.params)
        params_finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in leaves]))
        lr = jnp.nan if learning_rate is None else learning_rate(state.step - 1)
        return losses.mean(), finite_steps, params_finite, jnp.asarray(lr, jnp.float32)

    @partial(jax.jit, static_argnames="length", donate_argnums=0, out_shardings=chunk_out)
    def train_chunk(state: TrainState, x, y, length: int):  # the name profiles show
        """`length` steps in one dispatch, then the state and `health`'s four values."""
        if streamed:
            state, losses = jax.lax.scan(partial(train_step, None, None), state, x, length=length)
        else:
            state, losses = jax.lax.scan(partial(train_step, x, y), state, length=length)
        return state, *health(state, losses)

    step_out = (chunk_out[0] if state_shardings is not None else replicated, replicated)
    one_step = jax.jit(train_step, donate_argnums=2, out_shardings=step_out)
    summary = jax.jit(
        lambda state, losses: health(state, jnp.stack(losses)), out_shardings=replicated
    )

    def stepwise_chunk(state: TrainState, x, y, length: int):
        """As `train_chunk`, one dispatch a step (jit compiles nothing until it is called)."""
        losses = []
        for i in range(length):
            if streamed:  # this step's windows, from the host
                state, loss = one_step(None, None, state, x[i])
            else:
                state, loss = one_step(x, y, state, None)
            losses.append(loss)
        return state, *summary(state, losses)

    @partial(jax.jit, out_shardings=replicated)
    def evaluate(params, rest, x, y):
        model = nnx.merge(eval_graphdef, params, rest)
        loss, metrics = loss_and_metrics(task, model(x), y)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    return (train_chunk if fused else stepwise_chunk), evaluate
