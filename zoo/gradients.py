"""The gradients of one update: of one batch, or averaged over micro-batches (accumulation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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
    count = indices.shape[0]
    return rest, loss_sum / count, jax.tree.map(lambda g: g / count, grad_sum)
