"""The Transformer in `make bench`: a hand-written `jax.jit` baseline of its training step.

Baseline (a) of benchmarks/bench.py for `model=transformer data=sequence`: the same math as
`zoo.models.transformer.Transformer` (dropout off), the same initial parameters (taken from the
zoo run's model), data and on-device batch sampling, written as plain functions of a parameter
dict with one `jax.jit` + optax step per call and no Flax in the step. Its forward is pinned
equal to the model's by tests/test_transformer.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from zoo.training import Run

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


def plain_jax_transformer_step_fn(run: Run) -> Callable[[int], None]:
    """Baseline (a) for the Transformer: one `jax.jit` + optax step per Python call, on a
    plain parameter dict; `run_steps(steps)` as in benchmarks/bench.py."""
    spec = dict(run.model.zoo_spec[1])
    num_heads, causal = spec["num_heads"], spec["causal"]
    tx, batch = run.tx, run.batch_size
    x, y = run.data.x_train, run.data.y_train
    key = jax.random.key(0)

    @jax.jit
    def step(params, opt_state, i, x, y):
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, x.shape[0])

        def loss_fn(p):
            logits = forward(p, x[idx], num_heads=num_heads, causal=causal)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, i + 1, loss

    params = transformer_params(run.model)
    state = [params, tx.init(params), jnp.asarray(0)]

    def run_steps(steps: int) -> None:
        p, o, i = state
        for _ in range(steps):
            p, o, i, loss = step(p, o, i, x, y)
        loss.block_until_ready()
        state[:] = [p, o, i]

    return run_steps
