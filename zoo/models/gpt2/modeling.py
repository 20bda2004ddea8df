"""GPT-2 as Hugging Face's `GPT2LMHeadModel` computes it.

GPT2 -> embed, positions, blocks (stacked, scanned) -> attn_norm, attn (qkv, out), mlp_norm,
mlp (up, down); norm; logits through the token embedding (tied). `blocks/attn/qkv/kernel` is
`(layers, d_model, 3 * d_model)`, columns `[q | k | v]` as the checkpoint's Conv1D keeps them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.models.attention import KVCache, attend, positions_from_mask, scan_decoder
from zoo.models.gpt2 import settings  # noqa: F401  (the declaration register_model uses)
from zoo.models.layers import create_stacked, normal_init, precision_kwargs
from zoo.models.registry import register_model

INIT = normal_init(0.02)  # GPT-2's initializer_range


def _linear(i: int, o: int, rngs: nnx.Rngs, precision: dict) -> nnx.Linear:
    return nnx.Linear(i, o, kernel_init=INIT, rngs=rngs, **precision)


class Attention(nnx.Module):
    """Causal self-attention from one fused q/k/v projection."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, precision: dict):
        self.num_heads = num_heads
        self.qkv = _linear(d_model, 3 * d_model, rngs, precision)
        self.out = _linear(d_model, d_model, rngs, precision)

    def __call__(self, x, *, key_mask, cache):
        batch, length, d_model = x.shape
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        heads = (batch, length, self.num_heads, d_model // self.num_heads)
        mixed, cache = attend(
            q.reshape(heads), k.reshape(heads), v.reshape(heads), key_mask=key_mask, cache=cache
        )
        return self.out(mixed.reshape(x.shape)), cache


class MLP(nnx.Module):
    """up, GELU (tanh form, `gelu_new`), down."""

    def __init__(self, d_model: int, mlp_dim: int, *, rngs: nnx.Rngs, precision: dict):
        self.up = _linear(d_model, mlp_dim, rngs, precision)
        self.down = _linear(mlp_dim, d_model, rngs, precision)

    def __call__(self, x):
        return self.down(jax.nn.gelu(self.up(x), approximate=True))


class Block(nnx.Module):
    """`x + attn(attn_norm(x))`, then `x + mlp(mlp_norm(x))`."""

    def __init__(self, d_model, num_heads, mlp_dim, eps, *, rngs, precision):
        self.attn_norm = nnx.LayerNorm(d_model, epsilon=eps, rngs=rngs, **precision)
        self.attn = Attention(d_model, num_heads, rngs=rngs, precision=precision)
        self.mlp_norm = nnx.LayerNorm(d_model, epsilon=eps, rngs=rngs, **precision)
        self.mlp = MLP(d_model, mlp_dim, rngs=rngs, precision=precision)

    def __call__(self, x, *, key_mask=None, cache=None):
        mixed, cache = self.attn(self.attn_norm(x), key_mask=key_mask, cache=cache)
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x)), cache


@register_model("gpt2")
class GPT2(nnx.Module):
    """GPT-2 language model: integer tokens `(batch, length)` -> logits `(batch, length,
    vocab_size)`, causal. `mask` (1 on real tokens) keeps padding out of attention and, unless
    `positions` is given, numbers the real tokens from 0 (a left-padded row too)."""

    def __init__(
        self,
        vocab_size: int = 16,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        mlp_dim: int | None = None,
        max_len: int = 64,
        eps: float = 1e-5,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        self.max_len, self.num_layers, self.compute_dtype = max_len, num_layers, jnp.dtype(dtype)
        self.num_kv_heads, self.head_dim = num_heads, d_model // num_heads
        self.embed = nnx.Embed(vocab_size, d_model, embedding_init=INIT, rngs=rngs, **precision)
        self.positions = nnx.Embed(max_len, d_model, embedding_init=INIT, rngs=rngs, **precision)
        self.blocks = create_stacked(
            lambda r: Block(
                d_model, num_heads, mlp_dim or 4 * d_model, eps, rngs=r, precision=precision
            ),
            num_layers,
            rngs,
        )
        self.norm = nnx.LayerNorm(d_model, epsilon=eps, rngs=rngs, **precision)

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
        if cache is None and length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        if positions is None:
            positions = jnp.arange(length) if mask is None else positions_from_mask(mask)
        h = self.embed(tokens) + self.positions(positions)
        h, cache = scan_decoder(self.blocks, h, cache, key_mask=mask)
        logits = self.embed.attend(self.norm(h))
        return logits if cache is None else (logits, cache)
