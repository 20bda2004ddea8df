"""Shared pieces: the seed's linear layer, the activation table and the stacked-blocks helpers."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.models.common_settings import ACTIVATION_NAMES


class InnerLinear(nnx.Module):
    """`x @ kernel + bias`, kernel ~ N(0, 1/in_features), bias zero."""

    def __init__(self, in_features: int, out_features: int, rngs: nnx.Rngs):
        key = rngs.params()
        scale = 1.0 / jnp.sqrt(in_features)
        self.kernel = nnx.Param(jax.random.normal(key, (in_features, out_features)) * scale)
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


# Activations by name only: nothing is ever resolved from a dotted path.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jax.nn.tanh,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "softplus": jax.nn.softplus,
    "identity": lambda x: x,
}


assert tuple(ACTIVATIONS) == ACTIVATION_NAMES, "zoo.models.common_settings.ACTIVATION_NAMES"


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called `name`; unknown names raise ValueError listing valid ones."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        valid = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; valid: {valid}") from None


def create_stacked(make_block: Callable[[nnx.Rngs], nnx.Module], count: int, rngs: nnx.Rngs):
    """`count` blocks from `make_block`, their variables stacked along a leading layer axis."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs: nnx.Rngs) -> nnx.Module:
        return make_block(rngs)

    blocks = create(rngs)
    # A static mark (kept in the graphdef, not the state): weight loading and inspection read
    # the layer axis from the model's structure instead of guessing it from shapes.
    blocks.zoo_stacked = True
    return blocks


def stacked_paths(model: nnx.Module) -> frozenset[str]:
    """The state paths of the modules made by `create_stacked` (e.g. `blocks`), whose variables
    all have a leading layer axis. Works on abstract models from `nnx.eval_shape` too."""
    return frozenset(
        "/".join(map(str, path))
        for path, node in nnx.iter_graph(model)
        if getattr(node, "zoo_stacked", False) is True
    )


def scan_blocks(blocks: nnx.Module, x: jax.Array) -> jax.Array:
    """Apply stacked `blocks` in order with one `scan`: compile time does not grow with depth."""

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def step(block: nnx.Module, h: jax.Array) -> jax.Array:
        return block(h)

    return step(blocks, x)
