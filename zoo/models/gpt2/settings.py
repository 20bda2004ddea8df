"""The settings of `gpt2` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.models.common_settings import MAX_LAYERS, MAX_WIDTH, dtype_setting, param_dtype_setting


@declare("model", "gpt2", builder="zoo.models.gpt2.modeling:GPT2")
@dataclass(frozen=True)
class GPT2Settings:
    """GPT-2 (tiny by default; model=gpt2_124m is GPT-2 small): learned positions, pre-norm
    blocks (LayerNorm, fused q/k/v, tanh GELU), tied input and output embeddings; causal."""

    vocab_size: int = setting(
        16, "token ids are 0..vocab_size-1 (follows the data)", ge=1, le=MAX_WIDTH
    )
    d_model: int = setting(64, "width of the residual stream (n_embd)", ge=1, le=MAX_WIDTH)
    num_heads: int = setting(4, "attention heads; must divide d_model (n_head)", ge=1, le=4096)
    num_layers: int = setting(2, "blocks, stacked and scanned (n_layer)", ge=1, le=MAX_LAYERS)
    mlp_dim: int | None = setting(
        None, "feed-forward width (n_inner); null: 4 * d_model", ge=1, le=MAX_WIDTH
    )
    max_len: int = setting(
        64,
        "longest sequence: learned positions (n_positions; follows the data)",
        ge=1,
        le=MAX_WIDTH,
    )
    eps: float = setting(1e-5, "LayerNorm epsilon (layer_norm_epsilon)", gt=0, lt=1)
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise SettingError(
                f"model.d_model={self.d_model} must be divisible by "
                f"model.num_heads={self.num_heads}"
            )
