"""Attention for every zoo family: one call to `jax.nn.dot_product_attention` (so a GPU may use
its fused kernels), causal or not, with a padding mask, grouped-query attention by the number of
key/value heads, and a preallocated key/value cache for generation.

Shapes follow `jax.nn.dot_product_attention`: queries `(batch, length, heads, head_dim)`, keys and
values `(batch, source, kv_heads, head_dim)` with `kv_heads` dividing `heads` (query head `h` uses
key/value head `h // (heads // kv_heads)`, as Hugging Face's `repeat_kv`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class KVCache(NamedTuple):
    """A preallocated key/value cache of one attention layer (or of stacked layers, with a
    leading layer axis): `key`/`value` `(batch, capacity, kv_heads, head_dim)`, `index` the next
    slot to write (the same for every row: prompts are left-padded)."""

    key: jax.Array
    value: jax.Array
    index: jax.Array

    @classmethod
    def empty(
        cls, batch: int, capacity: int, kv_heads: int, head_dim: int, dtype, layers: int = 0
    ) -> KVCache:
        """A zero cache, with a leading axis of `layers` when that is not 0."""
        shape = (batch, capacity, kv_heads, head_dim)
        if layers:
            shape = (layers, *shape)
        index = jnp.zeros((layers,) if layers else (), jnp.int32)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), index)


def attend(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    causal: bool = True,
    key_mask: jax.Array | None = None,
    cache: KVCache | None = None,
) -> tuple[jax.Array, KVCache | None]:
    """Scaled dot-product attention (scores scaled by 1/sqrt(head_dim), softmax in float32).

    Args:
        query: `(batch, length, heads, head_dim)`.
        key: `(batch, length, kv_heads, head_dim)`, the keys of the same positions.
        value: as `key`.
        causal: a query attends to its own and earlier positions only.
        key_mask: `(batch, source)` booleans, False on padding: keys that no query attends to.
            With a cache, `source` is the cache's capacity and the mask covers every slot.
        cache: the keys and values of earlier positions; this call's are written at
            `cache.index` and the queries attend to every slot up to their own.

    Returns:
        `(output of the query's shape, the updated cache or None)`.
    """
    if cache is None:
        keys, values, offset = key, value, None
    else:
        start = (0, cache.index, 0, 0)
        keys = jax.lax.dynamic_update_slice(cache.key, key.astype(cache.key.dtype), start)
        values = jax.lax.dynamic_update_slice(cache.value, value.astype(cache.value.dtype), start)
        cache = KVCache(keys, values, cache.index + query.shape[1])
        offset = start[1]
    if key_mask is None and offset is None:  # the plain case: let the kernel build the mask
        out = jax.nn.dot_product_attention(query, keys, values, is_causal=causal)
        return out, cache
    length, source = query.shape[1], keys.shape[1]
    mask = jnp.ones((1, 1, length, source), bool)
    if causal:
        first = 0 if offset is None else offset  # the absolute slot of the first query
        rows = jnp.arange(length)[:, None] + first
        mask = mask & (jnp.arange(source)[None, :] <= rows)
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, :].astype(bool)
    out = jax.nn.dot_product_attention(
        query, keys.astype(query.dtype), values.astype(query.dtype), mask=mask
    )
    return out, cache


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Each token's position: the real tokens before it (pads get 0), as `generate` in Hugging
    Face transformers numbers a left-padded row."""
    mask = mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0) * mask


def scan_decoder(
    blocks: nnx.Module, h: jax.Array, cache: KVCache | None, **kwargs
) -> tuple[jax.Array, KVCache | None]:
    """Apply stacked decoder `blocks` (each called `block(h, cache=..., **kwargs)` and returning
    `(h, cache)`) with one scan; `cache` has a leading layer axis and is scanned alongside."""
    if cache is None:

        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
        def plain(block: nnx.Module, x: jax.Array) -> jax.Array:
            return block(x, cache=None, **kwargs)[0]

        return plain(blocks, h), None

    @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def cached(block: nnx.Module, x: jax.Array, layer: KVCache):
        return block(x, cache=layer, **kwargs)

    return cached(blocks, h, cache)
