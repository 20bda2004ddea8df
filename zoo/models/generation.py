"""Generation with a key/value cache for the zoo's decoders (`gpt2`, `llama`, and any model with
`init_cache(batch, capacity)` and `model(tokens, mask=, positions=, cache=)`).

Prompts of different lengths are left-padded to a common length and masked; the cache is
preallocated for the whole run; the prompt goes through one jitted forward (prefill), then each
new token through one jitted decode step. Both are compiled once per batch size and length
bucket (powers of two), not per token or per prompt length.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.errors import ZooError
from zoo.models.attention import positions_from_mask

MIN_BUCKET = 16
MAX_BATCH = 1 << 16


def bucket(length: int) -> int:
    """The padded length `length` compiles as: the next power of two, at least MIN_BUCKET."""
    return max(MIN_BUCKET, 1 << (max(length, 1) - 1).bit_length())


def generate(
    model: nnx.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int = 0,
    pad_id: int = 0,
    output_logits: bool = False,
) -> list[list[int]] | tuple[list[list[int]], np.ndarray]:
    """Continue each prompt by up to `max_new_tokens` tokens.

    Args:
        model: a zoo decoder (`gpt2`, `llama`), e.g. from `zoo.from_pretrained`.
        prompts: token ids, one sequence per prompt (lengths may differ; each at least 1).
        max_new_tokens: how many tokens to add to each prompt.
        temperature: 0: greedy (the most likely token); above 0: sample from the softmax of
            logits / temperature.
        top_k: sample among the `top_k` most likely tokens only.
        top_p: sample among the most likely tokens whose probabilities add up to `top_p`.
        eos_id: a row stops after this token (it is kept in its output).
        seed: the sampling seed: the same seed gives the same tokens.
        pad_id: the id the left padding holds (masked out; any valid id).
        output_logits: also return the raw logits of each step, `(batch, max_new_tokens,
            vocab)` (rows past their end hold the logits of the pad token they were fed).

    Returns:
        The new tokens of each prompt (the prompt left out), or `(tokens, logits)`.

    Raises:
        ZooError: a bad prompt or setting (one line), or a model that cannot generate.
    """
    rows, vocab = _check(model, prompts, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id)
    batch, longest = len(rows), max(map(len, rows))
    width = bucket(longest)
    capacity = bucket(width + max_new_tokens)
    limit = getattr(model, "max_len", None)
    if getattr(model, "positions", None) is not None and longest + max_new_tokens > limit:
        raise ZooError(
            f"generate: a prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds "
            f"the model's {limit} learned positions"
        )
    ids = np.full((batch, width), pad_id, np.int32)
    mask = np.zeros((batch, capacity), np.int32)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) : width] = 1
    graphdef, state = nnx.split(model)
    cache = model.init_cache(batch, capacity)
    mask = jnp.asarray(mask)
    positions = positions_from_mask(mask[:, :width])
    logits, cache = _forward(graphdef, state, jnp.asarray(ids), mask, positions, cache)
    last = logits[:, -1]
    following = jnp.asarray([len(r) for r in rows], jnp.int32)[:, None]  # next positions
    key = jax.random.key(seed)
    options = (jnp.float32(temperature), top_k, jnp.float32(top_p or 1.0))
    done = np.zeros(batch, bool)
    tokens, steps = [], []
    for t in range(max_new_tokens):
        if output_logits:
            steps.append(last)
        token = np.asarray(_choose(last, jax.random.fold_in(key, t), *options))
        token = np.where(done, pad_id, token)
        tokens.append(token)
        if eos_id is not None:
            done |= token == eos_id
        if t == max_new_tokens - 1 or done.all():
            break
        mask = mask.at[:, width + t].set(1)
        last, cache = _step(graphdef, state, jnp.asarray(token)[:, None], mask, following, cache)
        following = following + 1
    out = []
    for i in range(batch):
        row = [int(step[i]) for step in tokens]
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        out.append(row)
    if output_logits:
        return out, np.stack([np.asarray(s) for s in steps], axis=1)
    return out


def _check(model, prompts, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id):
    """The prompts as lists of ints, and the vocabulary size; ZooError for anything bad."""
    if not callable(getattr(model, "init_cache", None)):
        raise ZooError(f"generate: a {type(model).__name__} has no key/value cache (gpt2, llama)")
    vocab = model.embed.num_embeddings
    if isinstance(prompts, np.ndarray | jax.Array):
        prompts = np.asarray(prompts).tolist()
    if isinstance(prompts, str | bytes) or not isinstance(prompts, Sequence) or not prompts:
        raise ZooError("generate: prompts must be a non-empty list of token id lists")
    if len(prompts) > MAX_BATCH:
        raise ZooError(f"generate: {len(prompts)} prompts at once (at most {MAX_BATCH})")
    rows = []
    for i, prompt in enumerate(prompts):
        row = list(prompt) if isinstance(prompt, Sequence) and not isinstance(prompt, str) else None
        if not row or not all(_is_int(t) and 0 <= t < vocab for t in row):
            raise ZooError(
                f"generate: prompt {i} must be a non-empty list of token ids in [0, {vocab})"
            )
        rows.append([int(t) for t in row])
    if not _is_int(max_new_tokens) or not 1 <= max_new_tokens <= 1 << 20:
        raise ZooError(f"generate: max_new_tokens={max_new_tokens!r}; give an integer >= 1")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ZooError(f"generate: temperature={temperature!r}; give a number >= 0")
    if not 0 <= temperature < float("inf"):
        raise ZooError(f"generate: temperature={temperature!r}; give a number >= 0")
    if top_k is not None and (not _is_int(top_k) or not 1 <= top_k <= vocab):
        raise ZooError(f"generate: top_k={top_k!r}; give an integer in [1, {vocab}] or null")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1
    ):
        raise ZooError(f"generate: top_p={top_p!r}; give a number in (0, 1] or null")
    for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
        if value is not None and (not _is_int(value) or not 0 <= value < vocab):
            raise ZooError(f"generate: {name}={value!r}; give a token id in [0, {vocab})")
    return rows, vocab


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens, mask, positions, cache):
    return nnx.merge(graphdef, state)(tokens, mask=mask, positions=positions, cache=cache)


@functools.partial(jax.jit, static_argnums=0)
def _step(graphdef, state, token, mask, positions, cache):
    logits, cache = nnx.merge(graphdef, state)(token, mask=mask, positions=positions, cache=cache)
    return logits[:, -1], cache


@functools.partial(jax.jit, static_argnums=3)
def _choose(logits, key, temperature, top_k, top_p):
    """The next token of each row: the argmax when temperature is 0, else a sample from the
    tempered softmax restricted to the top_k tokens and the top_p nucleus."""
    logits = logits.astype(jnp.float32)
    greedy = jnp.argmax(logits, axis=-1)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    if top_k is not None:
        kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    ordered = jnp.sort(scaled, axis=-1)[:, ::-1]
    cumulative = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1)
    # the smallest set whose probability reaches top_p: the tokens before it fell short
    kept = jnp.sum(cumulative - jax.nn.softmax(ordered, axis=-1) < top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(ordered, jnp.maximum(kept - 1, 0), axis=-1)
    scaled = jnp.where(scaled < cutoff, -jnp.inf, scaled)
    sampled = jax.random.categorical(key, scaled, axis=-1)
    return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)
