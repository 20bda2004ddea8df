"""Vision Transformer over NHWC images.

ViT -> patch_embed (a convolution, kernel = stride = patch) -> cls_token (pool=cls) + positions
-> blocks (N, stacked, scanned: attn_norm, attn (the transformer's Attention: query/key/value/
out), mlp_norm, mlp/fc1, mlp/fc2) -> norm -> head. Tokens are the patches in row-major order over
the (h, w) grid, the class token first. GELU is the exact (erf) one, as in timm and transformers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from zoo.models.layers import (
    InnerLinear,
    create_stacked,
    kept_apart,
    precision_kwargs,
    scan_blocks,
)
from zoo.models.registry import register_model
from zoo.models.transformer.modeling import Attention
from zoo.models.vit import settings  # noqa: F401  (the declaration register_model uses)


class FeedForward(nnx.Module):
    """`fc2(gelu(fc1(x)))`, GELU exact."""

    def __init__(self, d_model: int, hidden: int, *, rngs: nnx.Rngs, **precision: DTypeLike):
        self.fc1 = InnerLinear(d_model, hidden, rngs=rngs, **precision)
        self.fc2 = InnerLinear(hidden, d_model, rngs=rngs, **precision)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """`x + drop(attn(attn_norm(x)))`, then `x + drop(mlp(mlp_norm(x)))`."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        mlp_ratio: int,
        norm_eps: float,
        dropout: float,
        *,
        rngs: nnx.Rngs,
        **precision: DTypeLike,
    ):
        self.attn_norm = nnx.LayerNorm(d_model, epsilon=norm_eps, rngs=rngs, **precision)
        self.attn = Attention(d_model, num_heads, rngs=rngs, **precision)
        self.mlp_norm = nnx.LayerNorm(d_model, epsilon=norm_eps, rngs=rngs, **precision)
        self.mlp = FeedForward(d_model, mlp_ratio * d_model, rngs=rngs, **precision)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def _drop(self, x: jax.Array) -> jax.Array:
        return self.dropout(x) if self.dropout is not None else x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self._drop(self.attn(self.attn_norm(x)))
        return x + self._drop(self.mlp(self.mlp_norm(x)))


@register_model("vit")
class ViT(nnx.Module):
    """NHWC images `(..., image_size, image_size, in_channels)` -> logits `(..., out_features)`,
    or the pooled features `(..., d_model)` without a head (`out_features` 0 or None).

    Settings and their checks: `ViTSettings` (settings.py beside this file)."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 4,
        mlp_ratio: int = 4,
        pool: str = "cls",
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        out_features: int | None = 1000,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch={patch_size}")
        self.image_size, self.patch_size, self.pool = image_size, patch_size, pool
        self.patch_embed = nnx.Conv(
            in_channels,
            d_model,
            (patch_size, patch_size),
            strides=(patch_size, patch_size),
            padding="VALID",
            rngs=rngs,
            **precision,
        )
        grid = image_size // patch_size
        tokens = grid * grid + (pool == "cls")
        # N(0, 0.02) as timm, the draw kept apart: the same numbers jitted or op by op
        draw = kept_apart(jax.random.normal(rngs.params(), (tokens, d_model))) * 0.02
        self.cls_token = (
            nnx.Param(jnp.zeros((d_model,), precision["param_dtype"])) if pool == "cls" else None
        )
        self.positions = nnx.Param(draw.astype(precision["param_dtype"]))
        self.blocks = create_stacked(
            lambda r: Block(d_model, num_heads, mlp_ratio, norm_eps, dropout, rngs=r, **precision),
            num_layers,
            rngs,
        )
        self.norm = nnx.LayerNorm(d_model, epsilon=norm_eps, rngs=rngs, **precision)
        self.num_features = d_model
        self.head = (
            InnerLinear(d_model, out_features, rngs=rngs, **precision) if out_features else None
        )

    def tokens(self, x: jax.Array) -> jax.Array:
        """Images `(batch, H, W, C)` -> tokens with positions `(batch, tokens, d_model)`."""
        if x.shape[-3:-1] != (self.image_size, self.image_size):
            raise ValueError(
                f"images of {x.shape[-3]}x{x.shape[-2]} pixels; this ViT takes "
                f"{self.image_size}x{self.image_size} (model.image_size)"
            )
        h = self.patch_embed(x)
        h = h.reshape(h.shape[0], -1, h.shape[-1])
        if self.cls_token is not None:
            cls = jnp.broadcast_to(
                self.cls_token[...].astype(h.dtype), (h.shape[0], 1, h.shape[-1])
            )
            h = jnp.concatenate([cls, h], axis=1)
        return h + self.positions[...].astype(h.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        lead = x.shape[:-3]
        h = scan_blocks(self.blocks, self.tokens(x.reshape(-1, *x.shape[-3:])))
        pooled = self.norm(h)[:, 0] if self.pool == "cls" else self.norm(h.mean(axis=1))
        pooled = pooled.reshape(*lead, pooled.shape[-1])
        return self.head(pooled) if self.head is not None else pooled
