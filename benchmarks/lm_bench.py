"""`make bench` (language models): a small gpt2's training tokens/s in the zoo's loop beside a
hand-written `jax.jit` loop of the same model (same data, initial parameters and batches), and
generation tokens/s with the KV cache (zoo.generate) beside re-running the whole sequence for
every new token. Writes benchmarks/LM_RESULTS.md.

    python benchmarks/lm_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench import header, machine, plain_jax_step_fn, side_by_side, zoo_run, zoo_step_fn
from flax import nnx

import zoo
from zoo.models.generation import bucket

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "LM_RESULTS.md"
# (d_model, layers, heads, length, batch, vocab): a small GPT-2 the CPU trains in seconds
TRAIN_SIZES = [(128, 4, 4, 128, 16, 512), (256, 4, 4, 256, 8, 512)]


def gpt2_run(d: int, layers: int, heads: int, length: int, batch: int, vocab: int, steps: int):
    return zoo_run(
        "model=gpt2",
        f"model.d_model={d}",
        f"model.num_heads={heads}",
        f"model.num_layers={layers}",
        "data=sequence",
        f"data.vocab_size={vocab}",
        f"data.length={length}",
        "data.n_train=2048",
        f"trainer.batch_size={batch}",
        f"trainer.log_every={steps}",
    )


def gpt2_math(params: dict, tokens: jax.Array, heads: int, eps: float) -> jax.Array:
    """GPT-2's forward, hand-written over the zoo's parameter dict (causal, no padding)."""

    def norm(x, p):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]

    def dense(x, p):
        return x @ p["kernel"] + p["bias"]

    def block(h, p):
        batch, length, d = h.shape
        q, k, v = jnp.split(dense(norm(h, p["attn_norm"]), p["attn"]["qkv"]), 3, axis=-1)
        shape = (batch, length, heads, d // heads)
        mixed = jax.nn.dot_product_attention(
            q.reshape(shape), k.reshape(shape), v.reshape(shape), is_causal=True
        )
        h = h + dense(mixed.reshape(h.shape), p["attn"]["out"])
        up = jax.nn.gelu(dense(norm(h, p["mlp_norm"]), p["mlp"]["up"]), approximate=True)
        return h + dense(up, p["mlp"]["down"]), None

    h = params["embed"]["embedding"][tokens] + params["positions"]["embedding"][: tokens.shape[1]]
    h, _ = jax.lax.scan(block, h, params["blocks"])
    return norm(h, params["norm"]) @ params["embed"]["embedding"].T


def gpt2_baseline(run, heads: int):
    params = nnx.to_pure_dict(nnx.state(run.model, nnx.Param))
    return plain_jax_step_fn(run, params, lambda p, x: gpt2_math(p, x, heads, 1e-5))


def training(quick: bool, repeats: int) -> list[tuple]:
    rows = []
    for d, layers, heads, length, batch, vocab in TRAIN_SIZES:
        steps = 5 if quick else 20
        sizes = (d, layers, heads, length, batch, vocab, steps)
        zoo_s, plain_s = side_by_side(
            [zoo_step_fn(gpt2_run(*sizes)), gpt2_baseline(gpt2_run(*sizes), heads)],
            steps,
            repeats,
        )
        tokens = batch * length
        label = f"gpt2 d_model {d}, {layers} layers, length {length}, batch {batch}"
        rows.append((label, tokens / zoo_s, tokens / plain_s))
        print(f"  train {label}: zoo {tokens / zoo_s:,.0f} tok/s, jax.jit {tokens / plain_s:,.0f}")
    return rows


def no_cache_generate(model, prompts: np.ndarray, new: int) -> np.ndarray:
    """Greedy decoding without a cache: every new token runs the whole (fixed-size) sequence."""
    graphdef, state = nnx.split(model)
    batch, prompt = prompts.shape
    total = bucket(prompt + new)

    @jax.jit
    def step(state, ids, t):
        logits = nnx.merge(graphdef, state)(ids)
        token = jnp.argmax(logits[:, t - 1], axis=-1)
        return ids.at[:, t].set(token)

    ids = jnp.zeros((batch, total), jnp.int32).at[:, :prompt].set(prompts)
    for t in range(prompt, prompt + new):
        ids = step(state, ids, t)
    return np.asarray(ids[:, prompt : prompt + new])


def generation(quick: bool, repeats: int) -> list[tuple]:
    rows = []
    for d, layers, prompt, new, batch in [(256, 4, 32, 96, 8), (256, 4, 32, 224, 8)]:
        if quick:
            new = new // 4
        model = zoo.create_model(
            "gpt2",
            vocab_size=512,
            d_model=d,
            num_heads=4,
            num_layers=layers,
            max_len=bucket(prompt + new),
            rngs=nnx.Rngs(0),
        )
        prompts = np.random.default_rng(0).integers(0, 512, (batch, prompt))

        def cached(model=model, prompts=prompts, new=new):
            return np.asarray(zoo.generate(model, prompts.tolist(), max_new_tokens=new))

        def uncached(model=model, prompts=prompts, new=new):
            return no_cache_generate(model, prompts, new)

        assert np.array_equal(cached(), uncached())  # the same tokens, greedy
        times = [[], []]
        for _ in range(repeats):
            for own, fn in zip(times, (cached, uncached), strict=True):
                start = time.perf_counter()
                fn()
                own.append(time.perf_counter() - start)
        tokens = batch * new
        with_cache, without = (tokens / statistics.median(t) for t in times)
        label = f"gpt2 d_model {d}, {layers} layers, batch {batch}, prompt {prompt} + {new} new"
        rows.append((label, with_cache, without))
        print(f"  generate {label}: cache {with_cache:,.0f} tok/s, no cache {without:,.0f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    train_rows = training(args.quick, repeats)
    gen_rows = generation(args.quick, repeats)
    lines = [
        "# Language-model benchmarks (benchmarks/lm_bench.py)",
        "",
        header(machine()),
        "",
        "Training tokens/s: the zoo's loop (`train.py`'s fused steps) beside a hand-written "
        "`jax.jit` + optax loop of the same GPT-2 math on the same parameters and batches.",
        "",
        "| model | zoo tok/s | jax.jit tok/s | zoo / jax.jit |",
        "|---|---|---|---|",
        *(f"| {label} | {z:,.0f} | {p:,.0f} | {z / p:.2f}x |" for label, z, p in train_rows),
        "",
        "Greedy generation tokens/s: `zoo.generate` (KV cache, one jitted decode step) beside "
        "re-running the whole sequence for every new token (the same tokens, checked).",
        "",
        "| model | with cache tok/s | without tok/s | speed-up |",
        "|---|---|---|---|",
        *(f"| {label} | {c:,.0f} | {n:,.0f} | {c / n:.1f}x |" for label, c, n in gen_rows),
        "",
        "GPU rows (model FLOPs utilisation of a gpt2_124m step in bfloat16) are measured only "
        "where a GPU is lent; none was for this run.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
