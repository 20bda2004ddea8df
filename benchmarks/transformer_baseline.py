"""A hand-written `jax.jit` baseline of the zoo Transformer's training step, for `make bench`.

The same math as `zoo.models.transformer.Transformer` (dropout off) and as the zoo loop's step:
a batch sampled on the device from `fold_in(key, step)`, per-token softmax cross-entropy, an optax
update; but written as plain functions of a parameter dict, with no Flax in the step.

    python benchmarks/transformer_baseline.py   # baseline and zoo loop steps/s, same model/data
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
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


def make_train_step(
    tx: optax.GradientTransformation, *, num_heads: int, causal: bool, batch_size: int
) -> Callable:
    """Pure `step(params, opt_state, key, step, x, y) -> (params, opt_state, loss)`."""

    def step(params, opt_state, key, step, x, y):
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, x.shape[0])
        xb, yb = x[idx], y[idx]

        def loss_fn(p):
            logits = forward(p, xb, num_heads=num_heads, causal=causal)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def baseline_steps_per_second(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    *,
    tx: optax.GradientTransformation,
    batch_size: int,
    steps: int = 200,
    fused: bool = False,
    seed: int = 0,
) -> float:
    """Steps per second of the hand-written step on `model`'s weights (compile excluded):
    one `jax.jit` dispatch per step, or with `fused` all `steps` in one jitted `lax.scan` (as
    the zoo loop fuses the steps between log points). `model` must be a zoo Transformer."""
    spec = dict(model.zoo_spec[1])
    step = make_train_step(
        tx, num_heads=spec["num_heads"], causal=spec["causal"], batch_size=batch_size
    )

    @partial(jax.jit, donate_argnums=(0, 1), static_argnums=3)
    def run(params, opt_state, first, count):
        def body(carry, i):
            params, opt_state = carry
            params, opt_state, loss = step(params, opt_state, key, first + i, x, y)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(count))
        return params, opt_state, losses[-1]

    key = jax.random.key(seed)
    params = transformer_params(model)
    opt_state = tx.init(params)
    chunk = steps if fused else 1
    params, opt_state, loss = run(params, opt_state, 0, chunk)  # compile
    loss.block_until_ready()
    start = time.perf_counter()
    for first in range(chunk, chunk + steps, chunk):
        params, opt_state, loss = run(params, opt_state, first, chunk)
    loss.block_until_ready()
    return steps / (time.perf_counter() - start)


def _zoo_steps_per_second(model, x, y, *, tx, batch_size: int, steps: int) -> float:
    """The zoo loop's fused step on the same model and data, for comparison."""
    from zoo.training import TrainState, make_steps

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    train_chunk, _ = make_steps(graphdef, graphdef, tx, "classification", batch_size)
    state = TrainState(params, rest, tx.init(params), jnp.asarray(0), jax.random.key(0))
    state, loss = train_chunk(state, x, y, length=steps)  # compile
    loss.block_until_ready()
    start = time.perf_counter()
    state, loss = train_chunk(state, x, y, length=steps)
    loss.block_until_ready()
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    from types import SimpleNamespace

    from zoo.data import sequence
    from zoo.registry import create_model

    data = sequence(
        SimpleNamespace(rule="reverse", vocab_size=16, length=12, n_train=8192, n_val=8, seed=0),
        None,
    )
    kwargs = dict(vocab_size=16, d_model=64, num_heads=4, num_layers=2, max_len=12)
    tx, batch, steps = optax.adam(1e-3), 256, 200
    runs = {
        "zoo loop (fused lax.scan)": _zoo_steps_per_second,
        "hand-written, jit per step": baseline_steps_per_second,
        "hand-written, fused": partial(baseline_steps_per_second, fused=True),
    }
    print(f"transformer {kwargs}, batch {batch}, adam, {jax.devices()[0].platform}")
    for label, run in runs.items():
        model = create_model("transformer", rngs=nnx.Rngs(0), **kwargs)
        rate = run(model, data.x_train, data.y_train, tx=tx, batch_size=batch, steps=steps)
        print(f"{label:>28}: {rate:8.1f} steps/s")
