"""Names and bounds the built-in models' declarations share (no JAX)."""

# The activations zoo.layers implements, by name: nothing is resolved from a dotted path.
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
