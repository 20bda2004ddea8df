"""Llama as Hugging Face's `LlamaForCausalLM` computes it.

Llama -> embed, blocks (stacked, scanned) -> attn_norm, attn (query, key, value, out), mlp_norm,
mlp (gate, up, down); norm; head (untied) or the token embedding (tied). Kernels are `(in, out)`
(the checkpoint's `[out, in]` transposed); q/k/v output columns are heads-major.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.models.attention import KVCache, attend, positions_from_mask, scan_decoder
from zoo.models.layers import create_stacked, normal_init, precision_kwargs
from zoo.models.llama import settings  # noqa: F401  (the declaration register_model uses)
from zoo.models.registry import register_model

INIT = normal_init(0.02)
NO_SCALING: Mapping[str, float | str] = MappingProxyType(
    {}
)  # rope_scaling's default, {}  # Llama's initializer_range


def rope_frequencies(head_dim: int, theta: float, scaling: dict | None) -> np.ndarray:
    """The `head_dim / 2` rotary frequencies, float32 as transformers computes them, with the
    llama3 scaling (long wavelengths divided by `factor`, the middle band smoothed)."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    inv = inv.astype(np.float32)
    if scaling is None:
        return inv
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """`x * cos + rotate_half(x) * sin` (the non-interleaved layout: i pairs with i + d/2)."""
    first, second = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-second, first], axis=-1)
    return (x * cos + rotated * sin).astype(x.dtype)


class Attention(nnx.Module):
    """Grouped-query self-attention with rotary positions, no biases."""

    def __init__(self, d_model, num_heads, num_kv_heads, head_dim, *, rngs, precision):
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim

        def linear(i, o):
            return nnx.Linear(i, o, use_bias=False, kernel_init=INIT, rngs=rngs, **precision)

        self.query = linear(d_model, num_heads * head_dim)
        self.key = linear(d_model, num_kv_heads * head_dim)
        self.value = linear(d_model, num_kv_heads * head_dim)
        self.out = linear(num_heads * head_dim, d_model)

    def __call__(self, x, *, cos, sin, key_mask, cache):
        batch, length, _ = x.shape
        q = self.query(x).reshape(batch, length, self.num_heads, self.head_dim)
        k = self.key(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        v = self.value(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        mixed, cache = attend(q, k, v, key_mask=key_mask, cache=cache)
        return self.out(mixed.reshape(batch, length, -1)), cache


class MLP(nnx.Module):
    """SwiGLU: `down(silu(gate(x)) * up(x))`."""

    def __init__(self, d_model, mlp_dim, *, rngs, precision):
        def linear(i, o):
            return nnx.Linear(i, o, use_bias=False, kernel_init=INIT, rngs=rngs, **precision)

        self.gate, self.up, self.down = (
            linear(d_model, mlp_dim),
            linear(d_model, mlp_dim),
            linear(mlp_dim, d_model),
        )

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    """`x + attn(attn_norm(x))`, then `x + mlp(mlp_norm(x))`, RMSNorms."""

    def __init__(
        self, d_model, num_heads, num_kv_heads, head_dim, mlp_dim, eps, *, rngs, precision
    ):
        self.attn_norm = nnx.RMSNorm(d_model, epsilon=eps, rngs=rngs, **precision)
        self.attn = Attention(
            d_model, num_heads, num_kv_heads, head_dim, rngs=rngs, precision=precision
        )
        self.mlp_norm = nnx.RMSNorm(d_model, epsilon=eps, rngs=rngs, **precision)
        self.mlp = MLP(d_model, mlp_dim, rngs=rngs, precision=precision)

    def __call__(self, x, *, cos, sin, key_mask=None, cache=None):
        mixed, cache = self.attn(
            self.attn_norm(x), cos=cos, sin=sin, key_mask=key_mask, cache=cache
        )
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x)), cache


@register_model("llama")
class Llama(nnx.Module):
    """Llama language model: integer tokens `(batch, length)` -> logits `(batch, length,
    vocab_size)`, causal. `mask` (1 on real tokens) keeps padding out of attention and, unless
    `positions` is given, numbers the real tokens from 0 (a left-padded row too)."""

    def __init__(
        self,
        vocab_size: int = 16,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        num_layers: int = 2,
        mlp_dim: int = 128,
        max_len: int = 64,
        rope_theta: float = 10000.0,
        rope_scaling: Mapping[str, float | str] = NO_SCALING,
        tie_embeddings: bool = False,
        eps: float = 1e-6,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        self.max_len, self.num_layers, self.compute_dtype = max_len, num_layers, jnp.dtype(dtype)
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or d_model // num_heads
        scaling = dict(rope_scaling) if rope_scaling else None
        # static (a tuple): the frequencies stay out of the state, the checkpoint and the optimizer
        self.frequencies = tuple(
            float(f) for f in rope_frequencies(self.head_dim, rope_theta, scaling)
        )
        self.embed = nnx.Embed(vocab_size, d_model, embedding_init=INIT, rngs=rngs, **precision)
        self.blocks = create_stacked(
            lambda r: Block(
                d_model,
                num_heads,
                self.num_kv_heads,
                self.head_dim,
                mlp_dim,
                eps,
                rngs=r,
                precision=precision,
            ),
            num_layers,
            rngs,
        )
        self.norm = nnx.RMSNorm(d_model, epsilon=eps, rngs=rngs, **precision)
        self.head = (
            None
            if tie_embeddings
            else nnx.Linear(
                d_model, vocab_size, use_bias=False, kernel_init=INIT, rngs=rngs, **precision
            )
        )

    def init_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty key/value cache of every layer for `batch` rows of `capacity` tokens."""
        return KVCache.empty(
            batch, capacity, self.num_kv_heads, self.head_dim, self.compute_dtype, self.num_layers
        )

    def __call__(
        self,
        tokens: jax.Array,
        *,
        mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
    ):
        """Logits; with a `cache` (`mask` then covers its every slot), `(logits, cache)`."""
        length = tokens.shape[-1]
        if positions is None:
            positions = jnp.arange(length) if mask is None else positions_from_mask(mask)
        angles = positions[..., None].astype(jnp.float32) * jnp.asarray(
            self.frequencies, jnp.float32
        )
        angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]  # (..., T, 1, head_dim)
        cos, sin = jnp.cos(angles), jnp.sin(angles)
        h = self.embed(tokens)
        h, cache = scan_decoder(self.blocks, h, cache, cos=cos, sin=sin, key_mask=mask)
        h = self.norm(h)
        logits = self.embed.attend(h) if self.head is None else self.head(h)
        return logits if cache is None else (logits, cache)
