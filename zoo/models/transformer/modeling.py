"""A small pre-norm Transformer encoder over token sequences.

Transformer -> blocks (N, stacked, scanned) -> Block -> attn (Attention) -> query/key/value/out
(the seed's linear layer), so the state reads like the architecture: `blocks/attn/query/kernel`
has shape `(N, d_model, d_model)`.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.typing import DTypeLike

from zoo.models.attention import attend
from zoo.models.layers import InnerLinear, create_stacked, embed_init, precision_kwargs, scan_blocks
from zoo.models.mlp.modeling import MLP
from zoo.models.registry import register_model
from zoo.models.transformer import settings  # noqa: F401  (the declaration register_model uses)


class Attention(nnx.Module):
    """Multi-head scaled dot-product self-attention with four linear projections, computed by
    `zoo.models.attention.attend` (`jax.nn.dot_product_attention`)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        rngs: nnx.Rngs,
        **precision: DTypeLike,
    ):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.causal = causal
        self.query = InnerLinear(d_model, d_model, rngs=rngs, **precision)
        self.key = InnerLinear(d_model, d_model, rngs=rngs, **precision)
        self.value = InnerLinear(d_model, d_model, rngs=rngs, **precision)
        self.out = InnerLinear(d_model, d_model, rngs=rngs, **precision)

    def __call__(self, x: jax.Array) -> jax.Array:
        """`x` of shape `(..., length, d_model)` -> the same shape."""
        *lead, length, d_model = x.shape
        heads = (*lead, length, self.num_heads, d_model // self.num_heads)
        q, k, v = (proj(x).reshape(heads) for proj in (self.query, self.key, self.value))
        # jax.nn.dot_product_attention wants exactly one batch axis
        q, k, v = (a.reshape(-1, *a.shape[-3:]) for a in (q, k, v))
        mixed = attend(q, k, v, causal=self.causal)[0].reshape(x.shape)
        return self.out(mixed)


class Block(nnx.Module):
    """`x + drop(attn(attn_norm(x)))`, then `x + drop(mlp(mlp_norm(x)))`."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        causal: bool = False,
        rngs: nnx.Rngs,
        dtype: str = "float32",
        param_dtype: str = "float32",
    ):
        precision = precision_kwargs(dtype, param_dtype)
        # LayerNorm computes its statistics in float32 whatever `dtype` is.
        self.attn_norm = nnx.LayerNorm(d_model, rngs=rngs, **precision)
        self.attn = Attention(d_model, num_heads, causal=causal, rngs=rngs, **precision)
        self.mlp_norm = nnx.LayerNorm(d_model, rngs=rngs, **precision)
        # The zoo's own MLP is the feed-forward: d_model -> mlp_ratio * d_model -> d_model.
        self.mlp = MLP(
            d_model,
            [mlp_ratio * d_model],
            activation="gelu",
            out_features=d_model,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def _drop(self, x: jax.Array) -> jax.Array:
        return self.dropout(x) if self.dropout is not None else x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self._drop(self.attn(self.attn_norm(x)))
        return x + self._drop(self.mlp(self.mlp_norm(x)))


@register_model("transformer")
class Transformer(nnx.Module):
    """Token embedding + learned positions, `num_layers` pre-norm blocks applied with a scan over
    their stacked parameters, a final layer norm and a linear head to `out_features` (default:
    `vocab_size`) logits per position. Input: integer tokens of shape `(..., length)`."""

    def __init__(
        self,
        vocab_size: int = 16,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        mlp_ratio: int = 4,
        max_len: int = 64,
        dropout: float = 0.0,
        causal: bool = False,
        out_features: int | None = None,
        dtype: str = "float32",
        param_dtype: str = "float32",
        remat: str = "none",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        self.max_len = max_len
        self.remat = remat
        embeds = {"embedding_init": embed_init, **precision}
        self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs, **embeds)
        self.positions = nnx.Embed(max_len, d_model, rngs=rngs, **embeds)
        self.blocks = create_stacked(
            lambda r: Block(
                d_model,
                num_heads,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                causal=causal,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=r,
            ),
            num_layers,
            rngs,
        )
        self.norm = nnx.LayerNorm(d_model, rngs=rngs, **precision)
        self.head = InnerLinear(d_model, out_features or vocab_size, rngs=rngs, **precision)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Integer `tokens` `(..., length)` -> logits `(..., length, out_features)`."""
        length = tokens.shape[-1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        h = self.embed(tokens) + self.positions.embedding[:length].astype(self.embed.dtype)
        h = scan_blocks(self.blocks, h, self.remat)
        return self.head(self.norm(h))
