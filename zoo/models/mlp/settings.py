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

    def tensor_parallel_rules(self) -> list[tuple[str, list[str | None]]]:
        """`parallel=tp`: Megatron's pairs, column- then row-parallel (docs: sharding)."""
        return feed_forward_rules("", len(self.widths), self.out_features is not None)


def feed_forward_rules(
    prefix: str, hidden: int, head: bool, stacked: int = 0
) -> list[tuple[str, list[str | None]]]:
    """Tensor-parallel rules of an MLP below `prefix` with `hidden` layers: layer 0 splits its
    outputs on `tensor` (column), layer 1 its inputs (row), and so on in pairs; a head after a
    column layer is a row layer. `stacked`: leading layer axes (blocks stacked for a scan)."""
    lead: list[str | None] = [None] * stacked
    rules: list[tuple[str, list[str | None]]] = []
    for i in range(hidden):
        if i % 2 == 0:
            rules += [
                (f"{prefix}layers/{i}/kernel", [*lead, None, "tensor"]),
                (f"{prefix}layers/{i}/bias", [*lead, "tensor"]),
            ]
        else:
            rules.append((f"{prefix}layers/{i}/kernel", [*lead, "tensor", None]))
    if head and hidden % 2 == 1:
        rules.append((f"{prefix}head/kernel", [*lead, "tensor", None]))
    return rules
