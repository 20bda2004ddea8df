"""zoo.models.attention: grouped-query attention with a padding mask against a plain einsum
reference, and a cache filled chunk by chunk against one pass over the whole sequence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zoo.models.attention import KVCache, attend, positions_from_mask

B, T, H, KV, D = 2, 6, 4, 2, 8


@jax.jit
def reference(q, k, v, key_mask):
    """softmax(q k^T / sqrt(D)) v, query head h on key/value head h // (H / KV), causal."""
    k, v = jnp.repeat(k, H // KV, axis=2), jnp.repeat(v, H // KV, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D)
    allowed = np.tril(np.ones((T, T), bool))[None, None] & key_mask[:, None, None, :]
    weights = jax.nn.softmax(jnp.where(allowed, scores, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def test_grouped_query_attention_with_padding_and_a_cache_matches_a_plain_reference():
    rng = np.random.default_rng(0)  # numpy draws: no program to compile for them
    shapes = [(B, T, H, D), (B, T, KV, D), (B, T, KV, D)]
    q, k, v = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes)
    mask = jnp.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], bool)  # row 0 left-padded
    out, none = jax.jit(attend)(q, k, v, key_mask=mask)
    real = np.asarray(mask)  # a pad query attends to nothing real: its output means nothing
    np.testing.assert_allclose(
        np.asarray(out)[real], np.asarray(reference(q, k, v, mask))[real], atol=1e-5
    )
    assert none is None
    # the same sequence through a cache of 8 slots: 4 tokens, then 1, then 1
    cache = KVCache.empty(B, 8, KV, D, jnp.float32)
    slots = jnp.zeros((B, 8), bool).at[:, :T].set(mask)
    pieces = []
    for start, stop in ((0, 4), (4, 5), (5, 6)):
        part, cache = jax.jit(attend)(
            q[:, start:stop], k[:, start:stop], v[:, start:stop], key_mask=slots, cache=cache
        )
        pieces.append(part)
    assert int(cache.index) == T
    np.testing.assert_allclose(
        np.asarray(jnp.concatenate(pieces, axis=1))[real], np.asarray(out)[real], atol=1e-6
    )
    np.testing.assert_array_equal(
        positions_from_mask(mask), [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    )
