"""`model.lora`: LoRA adapters on a model's linear layers, declared once for every model (no JAX).

Every model option carries this section beside its own settings (zoo.config.schema adds it); the
training build hands it to zoo.models.lora instead of the model's constructor.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting

# The attention projections of the decoder families, whatever they call their attention module.
DEFAULT_TARGETS = ["**/attn/*", "**/self_attn/*", "**/attention/*"]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA (low-rank adapters) on the linear layers the path patterns select."""

    rank: int = setting(0, "rank of each adapter; 0: no LoRA", ge=0, le=1 << 16)
    alpha: float = setting(16.0, "adapters' output scaled by alpha / rank", gt=0)
    dropout: float = setting(0.0, "dropout on each adapter's input while training", ge=0, lt=1)
    targets: list[str] = setting(
        DEFAULT_TARGETS,
        "path patterns of the linear layers that get adapters (default: attention projections)",
        min_items=1,
    )
