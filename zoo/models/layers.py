"""Shared pieces: the seed's linear layer, the activation table and the stacked-blocks helpers."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype
from jax.typing import DTypeLike

from zoo.models.common_settings import ACTIVATION_NAMES


class InnerLinear(nnx.Module):
    """`x @ kernel + bias`, kernel ~ N(0, 1/in_features), bias zero.

    As in nnx.Linear, the parameters are kept in `param_dtype` and the product is computed in
    `dtype` (inputs and parameters cast to it). The kernel is drawn in float32 and then cast, so
    a float32 layer draws exactly the seed's numbers and other dtypes round the same draw.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rngs: nnx.Rngs,
        *,
        dtype: DTypeLike = jnp.float32,
        param_dtype: DTypeLike = jnp.float32,
    ):
        key = rngs.params()
        scale = 1.0 / jnp.sqrt(in_features)
        kernel = kept_apart(jax.random.normal(key, (in_features, out_features))) * scale
        if kernel.dtype != param_dtype:  # (an equal-dtype cast is one more program to load)
            kernel = kernel.astype(param_dtype)
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = promote_dtype((x, self.kernel[...], self.bias[...]), dtype=self.dtype)
        return x @ kernel + bias


def kept_apart(x: jax.Array) -> jax.Array:
    """`x`, computed as if on its own: under a trace (the zoo builds models inside one jitted
    program) an optimization barrier keeps XLA from fusing `x`'s last operations with the next
    ones (a scaled normal draw then differs in the last bit for about half of all seeds).
    Initialised in one program or op by op, a model gets the same numbers: the seed's."""
    return jax.lax.optimization_barrier(x) if isinstance(x, jax.core.Tracer) else x


def embed_init(key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
    """nnx.Embed's default initialiser, `variance_scaling(1.0, "fan_in", "normal", out_axis=0)`
    (N(0, 1/features)), with the draw `kept_apart`: the same numbers in one program or op by op."""
    variance = jnp.array(1.0 / shape[-1], dtype=dtype)
    return kept_apart(jax.random.normal(key, shape, dtype)) * jnp.sqrt(variance)


def precision_kwargs(dtype: str, param_dtype: str) -> dict[str, jnp.dtype]:
    """`dtype` and `param_dtype` by name (`model.dtype=bfloat16`) as the layers take them."""
    return {"dtype": jnp.dtype(dtype), "param_dtype": jnp.dtype(param_dtype)}


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


def in_stacked(path: str, stacked_modules: frozenset[str]) -> bool:
    """Whether the state path `path` lies below one of `stacked_modules` (`stacked_paths`), so
    that its tensor has a leading layer axis."""
    return any(path.startswith(module + "/") for module in stacked_modules)


# zoo.models.features: id(stacked blocks) -> what takes every layer's output, while it runs
COLLECT: dict[int, Callable[[jax.Array], None]] = {}

# model.remat: what the backward pass of each scanned block keeps from the forward pass (JAX's
# checkpoint policies); "none" keeps everything (no rematerialisation).
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "full": None,  # keeps nothing inside a block: recomputes it (jax.checkpoint's default)
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keeps the matmul outputs
}


def scan_blocks(blocks: nnx.Module, x: jax.Array, remat: str = "none") -> jax.Array:
    """Apply stacked `blocks` in order with one `scan`: compile time does not grow with depth.
    `remat` (`none`, `full`, `dots`): recompute each block in the backward pass, keeping only
    what REMAT_POLICIES says (the same numbers, less memory at the compiled peak)."""
    if id(blocks) in COLLECT:  # features asked for: the scan also gives every layer's output
        return _scan_collecting(blocks, x, COLLECT[id(blocks)])

    def apply(block: nnx.Module, h: jax.Array) -> jax.Array:
        return block(h)

    if remat != "none":
        apply = nnx.remat(apply, policy=REMAT_POLICIES[remat])

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def step(block: nnx.Module, h: jax.Array) -> jax.Array:
        return apply(block, h)

    return step(blocks, x)


def normal_init(stddev: float) -> Callable[..., jax.Array]:
    """N(0, stddev^2) with the draw `kept_apart`: the same numbers in one program or op by op
    (GPT-2's and Llama's `initializer_range`)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        return (kept_apart(jax.random.normal(key, shape, jnp.float32)) * stddev).astype(dtype)

    return init


def _scan_collecting(blocks: nnx.Module, x: jax.Array, take: Callable[[jax.Array], None]):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=(nnx.Carry, 0))
    def step(block: nnx.Module, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = block(h)
        return h, h

    h, every = step(blocks, x)
    take(every)
    return h
