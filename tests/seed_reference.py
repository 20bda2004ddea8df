"""Independent oracle: the seed document's reference code, copied verbatim.

Source: shared/seed/000_5cc3941633493b85.txt ("NNX Deep Nesting"). The three classes are the
seed's code as written; `deep_nested_forward` follows the seed's Problem section step by step.
This file must not import anything from `zoo`.
"""

import jax
import jax.numpy as jnp
from flax import nnx


class InnerLinear(nnx.Module):
    def __init__(self, in_features, out_features, rngs):
        key = rngs.params()
        self.kernel = nnx.Param(
            jax.random.normal(key, (in_features, out_features))
            * (1.0 / jnp.sqrt(in_features))
        )
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x):
        return x @ self.kernel + self.bias


class MiddleModule(nnx.Module):
    def __init__(self, in_features, hidden, rngs):
        self.inner = InnerLinear(in_features, hidden, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.inner(x))


class OuterModule(nnx.Module):
    def __init__(self, in_features, hidden, rngs):
        self.middle = MiddleModule(in_features, hidden, rngs=rngs)

    def __call__(self, x):
        return self.middle(x)


def deep_nested_forward(seed, x, hidden):
    rngs = nnx.Rngs(int(seed))
    model = OuterModule(in_features=x.shape[-1], hidden=int(hidden), rngs=rngs)
    return model(x)
