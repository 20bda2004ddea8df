"""The settings of `mlp` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.models.common_settings import (
    ACTIVATION_NAMES,
    MAX_WIDTH,
    dtype_setting,
    param_dtype_setting,
)


@declare("model", "mlp", builder="zoo.models.mlp.modeling:MLP")
@dataclass(frozen=True)
class MLPSettings:
    """Linear + activation (+ dropout) per entry of widths, then a linear head."""

    in_features: int = setting(4, "input width (follows the data)", ge=1, le=MAX_WIDTH)
    widths: list[int] = setting(
        [64, 64], "the hidden layers' widths", ge=1, le=MAX_WIDTH, min_items=1, max_items=1000
    )
    activation: str = setting("relu", "after every hidden layer", choices=ACTIVATION_NAMES)
    dropout: float = setting(0.0, "dropout rate after every hidden layer", ge=0, lt=1)
    out_features: int | None = setting(
        1, "width of the linear head; null: no head", ge=1, le=MAX_WIDTH
    )
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()
