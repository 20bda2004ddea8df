"""The settings of `deep_nested` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.models.common_settings import (
    ACTIVATION_NAMES,
    MAX_LAYERS,
    MAX_WIDTH,
    dtype_setting,
    param_dtype_setting,
)


@declare("model", "deep_nested", builder="zoo.models.deep_nested.modeling:OuterModule")
@dataclass(frozen=True)
class DeepNestedSettings:
    """The seed's model: depth=1, activation=relu, out_features=null is the seed's exactly."""

    in_features: int = setting(4, "input width (follows the data)", ge=1, le=MAX_WIDTH)
    hidden: int = setting(8, "width of every block", ge=1, le=MAX_WIDTH)
    depth: int = setting(
        1, "number of blocks; 2..depth are stacked and scanned", ge=1, le=MAX_LAYERS
    )
    activation: str = setting("relu", "after every block", choices=ACTIVATION_NAMES)
    out_features: int | None = setting(
        None, "width of a linear head; null: no head", ge=1, le=MAX_WIDTH
    )
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()
