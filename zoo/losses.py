"""The loss of each task, and the metrics logged beside it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def loss_and_metrics(task: str, out: jax.Array, y: jax.Array) -> tuple[jax.Array, dict]:
    """Mean squared error (regression) or cross-entropy with accuracy (classification), in
    float32 whatever dtype the model computes in (a bfloat16 sum of squares loses the small
    differences training needs)."""
    out = out.astype(jnp.float32)
    if task == "classification":
        loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        return loss, {"accuracy": (out.argmax(-1) == y).mean()}
    return jnp.mean((out - y) ** 2), {}
