"""The Transformer's math by hand, for baseline (a) of `make bench`.

The same math as `zoo.models.transformer.modeling.Transformer` (dropout off), written as plain
functions of a parameter dict with no Flax in them; benchmarks/bench.py runs it in its
hand-written `jax.jit` + optax step. Its forward is pinned equal to the model's by
tests/unit/models/test_transformer.py.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Params = dict[str, Any]


def transformer_params(model: nnx.Module) -> Params:
    """The zoo model's parameters as a plain nested dict: both sides start from equal weights."""
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _layer_norm(x: jax.Array, p: Params, eps: float = 1e-6) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def _linear(x: jax.Array, p: Params) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def _block(h: jax.Array, p: Params, num_heads: int, causal: bool) -> jax.Array:
    *lead, length, d = h.shape
    a = _layer_norm(h, p["attn_norm"])
    q, k, v = (
        _linear(a, p["attn"][n]).reshape(*lead, length, num_heads, d // num_heads)
        for n in ("query", "key", "value")
    )
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(d // num_heads)
    if causal:
        logits = jnp.where(jnp.tril(jnp.ones((length, length), bool)), logits, -1e30)
    mixed = jnp.einsum("...hqk,...khd->...qhd", jax.nn.softmax(logits, -1), v)
    h = h + _linear(mixed.reshape(h.shape), p["attn"]["out"])
    m = _layer_norm(h, p["mlp_norm"])
    return h + _linear(jax.nn.gelu(_linear(m, p["mlp"]["layers"][0])), p["mlp"]["head"])


def forward(params: Params, tokens: jax.Array, *, num_heads: int, causal: bool = False):
    """Logits `(..., length, out)` for integer `tokens`; the layers run in one `lax.scan`."""
    length = tokens.shape[-1]
    h = params["embed"]["embedding"][tokens] + params["positions"]["embedding"][:length]
    h, _ = jax.lax.scan(lambda h, p: (_block(h, p, num_heads, causal), None), h, params["blocks"])
    return _linear(_layer_norm(h, params["norm"]), params["head"])
