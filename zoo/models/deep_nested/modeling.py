"""The seed's model: OuterModule -> MiddleModule -> InnerLinear, generalised in depth and head.

With depth=1, activation="relu", out_features=None it is the seed's model exactly: same
parameters for the same seed and state paths `middle/inner/kernel`, `middle/inner/bias`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from zoo.models.deep_nested import settings  # noqa: F401  (the declaration register_model uses)
from zoo.models.layers import (
    InnerLinear,
    create_stacked,
    get_activation,
    precision_kwargs,
    scan_blocks,
)
from zoo.models.registry import register_model


class MiddleModule(nnx.Module):
    """One block: `activation(inner(x))`, computed in `dtype` (see InnerLinear)."""

    def __init__(
        self,
        in_features: int,
        hidden: int,
        rngs: nnx.Rngs,
        activation: str = "relu",
        *,
        dtype: DTypeLike = jnp.float32,
        param_dtype: DTypeLike = jnp.float32,
    ):
        get_activation(activation)  # fail at construction, not at the first call
        self.activation = activation
        self.inner = InnerLinear(
            in_features, hidden, rngs=rngs, dtype=dtype, param_dtype=param_dtype
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return get_activation(self.activation)(self.inner(x))


@register_model("deep_nested")
class OuterModule(nnx.Module):
    """`depth` Linear+activation blocks, then an optional linear head.

    Settings and their checks: `DeepNestedSettings` (settings.py beside this file).
    Block 1 is `middle` (in_features -> hidden, drawn first, as in the seed); blocks 2..depth are
    `blocks`, hidden -> hidden, stored stacked with a leading layer axis and applied with a scan.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        *,
        depth: int = 1,
        activation: str = "relu",
        out_features: int | None = None,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        self.middle = MiddleModule(
            in_features, hidden, rngs=rngs, activation=activation, **precision
        )
        # Absent parts are None (static), so depth=1 without head keeps exactly the seed's state.
        self.blocks = (
            create_stacked(
                lambda r: MiddleModule(hidden, hidden, rngs=r, activation=activation, **precision),
                depth - 1,
                rngs,
            )
            if depth > 1
            else None
        )
        self.head = (
            InnerLinear(hidden, out_features, rngs=rngs, **precision) if out_features else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.middle(x)
        if self.blocks is not None:
            h = scan_blocks(self.blocks, h)
        if self.head is not None:
            h = self.head(h)
        return h


def deep_nested_forward(seed: float, x: jax.Array, hidden: float) -> jax.Array:
    """The seed's function: build `OuterModule(x.shape[-1], int(hidden))` from
    `nnx.Rngs(int(seed))` and apply it to `x`.

    Args:
        seed: the model's seed (a whole number).
        x: the input, 1-D or batched with leading dims.
        hidden: the hidden width (a whole number).

    Returns:
        The model's output, `x`'s leading dims by `hidden`.
    """
    x = jnp.asarray(x)
    model = OuterModule(in_features=x.shape[-1], hidden=int(hidden), rngs=nnx.Rngs(int(seed)))
    return model(x)
