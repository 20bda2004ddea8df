"""Names, bounds and settings the built-in models' declarations share (no JAX)."""

from __future__ import annotations

from typing import Any

from zoo.config.fields import setting

# The activations zoo.models.layers implements, by name: nothing is resolved from a dotted path.
ACTIVATION_NAMES = (
    "relu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "elu",
    "leaky_relu",
    "softplus",
    "identity",
)
MAX_WIDTH = 1 << 20  # any one width; what fits in memory is checked before building
MAX_LAYERS = 10_000

# Floating-point types a model may compute in or keep its parameters in, by name.
REMAT_NAMES = ("none", "full", "dots")  # zoo.models.layers.REMAT_POLICIES, and none
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def dtype_setting() -> Any:
    """`model.dtype`: the compute dtype of the layers' matmuls and activations (as nnx.Linear's
    `dtype`); losses, softmax and normalisation statistics stay in float32 whatever it is."""
    return setting(
        "float32",
        "compute dtype of matmuls and activations (losses, softmax, norm statistics: float32)",
        choices=DTYPE_NAMES,
    )


def param_dtype_setting() -> Any:
    """`model.param_dtype`: the dtype parameters are created, trained and saved in."""
    return setting(
        "float32", "dtype parameters are kept, trained and saved in", choices=DTYPE_NAMES
    )
