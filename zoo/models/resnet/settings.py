"""The settings of `resnet` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.models.common_settings import MAX_LAYERS, MAX_WIDTH, dtype_setting, param_dtype_setting

BLOCKS = ("basic", "bottleneck")
EXPANSION = {"basic": 1, "bottleneck": 4}  # a block's output width over its stage's width


@declare("model", "resnet", builder="zoo.models.resnet.modeling:ResNet")
@dataclass(frozen=True)
class ResNetSettings:
    """ResNet v1.5 over NHWC images: 7x7 stem, stages of residual blocks with BatchNorm,
    global average pool, linear head. The defaults are a small one; model=resnet18, resnet34
    and resnet50 are the published shapes."""

    block: str = setting("basic", "residual block: basic (two 3x3) or bottleneck", choices=BLOCKS)
    layers: list[int] = setting(
        [1, 1, 1, 1], "blocks per stage", ge=1, le=MAX_LAYERS, min_items=1, max_items=16
    )
    widths: list[int] = setting(
        [16, 32, 64, 128],
        "each stage's width (a bottleneck's output is 4x wider)",
        ge=1,
        le=MAX_WIDTH,
        min_items=1,
        max_items=16,
    )
    stem_width: int = setting(16, "channels of the 7x7 stem convolution", ge=1, le=MAX_WIDTH)
    in_channels: int = setting(3, "image channels (follows the data)", ge=1, le=4096)
    out_features: int | None = setting(
        1000, "classes of the linear head; 0 or null: no head (pooled features)", ge=0, le=MAX_WIDTH
    )
    freeze_norm: bool = setting(
        False, "BatchNorm uses and keeps its running statistics in training too"
    )
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.widths):
            raise SettingError(
                f"model.layers has {len(self.layers)} stages but model.widths has "
                f"{len(self.widths)}; give one width per stage"
            )
