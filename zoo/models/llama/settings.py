"""The settings of `llama` (modeling.py beside this file), declared once (no JAX)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.models.common_settings import MAX_LAYERS, MAX_WIDTH, dtype_setting, param_dtype_setting

# rope_scaling, as Hugging Face writes it: {"rope_type": "llama3", "factor": ..., ...}
ROPE_TYPES = ("llama3",)
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


@declare("model", "llama", builder="zoo.models.llama.modeling:Llama")
@dataclass(frozen=True)
class LlamaSettings:
    """Llama (tiny by default): RMSNorm, rotary positions, SwiGLU feed-forward, grouped-query
    attention, tied or untied output embeddings; causal."""

    vocab_size: int = setting(
        16, "token ids are 0..vocab_size-1 (follows the data)", ge=1, le=MAX_WIDTH
    )
    d_model: int = setting(64, "width of the residual stream (hidden_size)", ge=1, le=MAX_WIDTH)
    num_heads: int = setting(4, "query heads (num_attention_heads)", ge=1, le=4096)
    num_kv_heads: int | None = setting(
        None, "key/value heads, dividing num_heads (grouped-query); null: num_heads", ge=1, le=4096
    )
    head_dim: int | None = setting(
        None, "width of one head; null: d_model / num_heads", ge=1, le=MAX_WIDTH
    )
    num_layers: int = setting(
        2, "blocks, stacked and scanned (num_hidden_layers)", ge=1, le=MAX_LAYERS
    )
    mlp_dim: int = setting(128, "SwiGLU width (intermediate_size)", ge=1, le=MAX_WIDTH)
    max_len: int = setting(
        64, "longest sequence (max_position_embeddings; follows the data)", ge=1, le=MAX_WIDTH
    )
    rope_theta: float = setting(10000.0, "rotary base wavelength", gt=1)
    rope_scaling: dict[str, float | str] = setting(
        {},
        "rotary scaling as Hugging Face writes it: {rope_type: llama3, factor, low_freq_factor, "
        "high_freq_factor, original_max_position_embeddings}; {}: none",
    )
    tie_embeddings: bool = setting(
        False, "the output matrix is the token embedding (tie_word_embeddings)"
    )
    eps: float = setting(1e-6, "RMSNorm epsilon (rms_norm_eps)", gt=0, lt=1)
    dtype: str = dtype_setting()
    param_dtype: str = param_dtype_setting()

    def __post_init__(self) -> None:
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise SettingError(
                f"model.num_kv_heads={kv} must divide model.num_heads={self.num_heads}"
            )
        if self.head_dim is None and self.d_model % self.num_heads:
            raise SettingError(
                f"model.d_model={self.d_model} must be divisible by "
                f"model.num_heads={self.num_heads} (or set model.head_dim)"
            )
        if (self.head_dim or self.d_model // self.num_heads) % 2:
            raise SettingError("model.head_dim must be even (rotary positions rotate pairs)")
        check_rope_scaling(self.rope_scaling)


def check_rope_scaling(scaling: dict | None) -> None:
    """SettingError unless `scaling` is empty (none) or a complete llama3 scaling."""
    if not scaling:
        return
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ROPE_TYPES:
        raise SettingError(
            f"model.rope_scaling.rope_type={kind!r} is not supported (supported: "
            f"{', '.join(ROPE_TYPES)}; {{}} for none)"
        )
    for key in LLAMA3_KEYS:
        value = scaling.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise SettingError(f"model.rope_scaling.{key} must be a positive number, got {value!r}")
    extra = sorted(set(scaling) - {"rope_type", "type", *LLAMA3_KEYS})
    if extra:
        raise SettingError(f"model.rope_scaling: unknown keys {extra} (llama3 takes {LLAMA3_KEYS})")
    if scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise SettingError("model.rope_scaling.high_freq_factor must exceed low_freq_factor")
