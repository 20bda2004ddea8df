"""A plain multilayer perceptron: Linear + activation (+ dropout) per width, then a linear head."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
from flax import nnx

from zoo.models.layers import InnerLinear, get_activation, precision_kwargs
from zoo.models.mlp import settings  # noqa: F401  (the declaration register_model uses)
from zoo.models.registry import register_model


@register_model("mlp")
class MLP(nnx.Module):
    """`in_features -> widths[0] -> ... -> widths[-1]`, each layer followed by the activation
    and dropout; `out_features` set adds a final linear head (no activation).

    Settings and their checks: `MLPSettings` (settings.py beside this file).
    State paths mirror the attributes: `layers/0/kernel`, ..., `head/kernel`.
    """

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int] = (64, 64),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        out_features: int | None = 1,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        widths = list(widths)
        self.activation = activation
        sizes = [in_features, *widths]
        self.layers = nnx.List(
            InnerLinear(n_in, n_out, rngs=rngs, **precision)
            for n_in, n_out in itertools.pairwise(sizes)
        )
        self.head = (
            InnerLinear(widths[-1], out_features, rngs=rngs, **precision) if out_features else None
        )
        # None when off, so a dropout-free MLP's state holds parameters only.
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for layer in self.layers:
            x = act(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.head(x) if self.head is not None else x
