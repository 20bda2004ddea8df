"""The settings of `vit` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.models.common_settings import MAX_LAYERS, MAX_WIDTH, dtype_setting, param_dtype_setting

POOLS = ("cls", "mean")


@declare("model", "vit", builder="zoo.models.vit.modeling:ViT")
@dataclass(frozen=True)
class ViTSettings:
    """Vision Transformer over NHWC images: patch embedding, learned positions, pre-norm
    blocks stacked and scanned, final norm, linear head. The defaults are a small one;
    model=vit_tiny, vit_small and vit_base are the published shapes (patch 16 at 224)."""

    image_size: int = setting(32, "image height and width (follows the data)", ge=1, le=1 << 16)
    patch_size: int = setting(4, "square patches; must divide image_size", ge=1, le=1 << 16)
    in_channels: int = setting(3, "image channels (follows the data)", ge=1, le=4096)
    d_model: int = setting(64, "width of the residual stream", ge=1, le=MAX_WIDTH)
    num_heads: int = setting(4, "attention heads; must divide d_model", ge=1, le=4096)
    num_layers: int = setting(4, "blocks, stacked and scanned", ge=1, le=MAX_LAYERS)
    mlp_ratio: int = setting(4, "feed-forward width as a multiple of d_model", ge=1, le=64)
    pool: str = setting(
        "cls",
        "cls: a class token (norm, then it); mean: mean of the tokens, then norm",
        choices=POOLS,
    )
    norm_eps: float = setting(1e-6, "LayerNorm epsilon (timm 1e-6, Hugging Face 1e-12)", gt=0)
    dropout: float = setting(0.0, "dropout rate on every residual branch", ge=0, lt=1)
    out_features: int | None = setting(
        1000, "classes of the linear head; 0 or null: no head (pooled features)", ge=0, le=MAX_WIDTH
    )
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise SettingError(
                f"model.d_model={self.d_model} must be divisible by "
                f"model.num_heads={self.num_heads}"
            )
        if self.image_size % self.patch_size:
            raise SettingError(
                f"model.image_size={self.image_size} is not a multiple of "
                f"model.patch_size={self.patch_size}"
            )
