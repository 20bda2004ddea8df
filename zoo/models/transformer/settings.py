"""The settings of `transformer` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.models.common_settings import (
    MAX_LAYERS,
    MAX_WIDTH,
    REMAT_NAMES,
    dtype_setting,
    param_dtype_setting,
)
from zoo.models.mlp.settings import feed_forward_rules


@declare("model", "transformer", builder="zoo.models.transformer.modeling:Transformer")
@dataclass(frozen=True)
class TransformerSettings:
    """A pre-norm Transformer encoder over integer token sequences."""

    vocab_size: int = setting(
        16, "token ids are 0..vocab_size-1 (follows the data)", ge=1, le=MAX_WIDTH
    )
    d_model: int = setting(64, "width of the residual stream", ge=1, le=MAX_WIDTH)
    num_heads: int = setting(4, "attention heads; must divide d_model", ge=1, le=4096)
    num_layers: int = setting(2, "blocks, stacked and scanned", ge=1, le=MAX_LAYERS)
    mlp_ratio: int = setting(4, "feed-forward width as a multiple of d_model", ge=1, le=64)
    max_len: int = setting(64, "longest sequence (follows the data)", ge=1, le=MAX_WIDTH)
    dropout: float = setting(0.0, "dropout rate on every residual branch", ge=0, lt=1)
    causal: bool = setting(False, "attend only to earlier positions")
    out_features: int | None = setting(
        None, "logits per position; null: vocab_size", ge=1, le=MAX_WIDTH
    )
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()
    remat: str = setting(
        "none",
        "recompute each block in the backward pass: full keeps nothing, dots the matmuls",
        choices=REMAT_NAMES,
    )

    def tensor_parallel_rules(self) -> list[tuple[str, list[str | None]]]:
        """`parallel=tp` (docs: sharding): query, key and value split their outputs (the heads)
        on `tensor`, `out` its inputs; the feed-forward column then row. Every tensor of the
        stacked blocks has the layer axis in front."""
        qkv = [
            rule
            for name in ("query", "key", "value")
            for rule in (
                (f"blocks/attn/{name}/kernel", [None, None, "tensor"]),
                (f"blocks/attn/{name}/bias", [None, "tensor"]),
            )
        ]
        out = [("blocks/attn/out/kernel", [None, "tensor", None])]
        return qkv + out + feed_forward_rules("blocks/mlp/", 1, True, stacked=1)

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise SettingError(
                f"model.d_model={self.d_model} must be divisible by "
                f"model.num_heads={self.num_heads}"
            )
