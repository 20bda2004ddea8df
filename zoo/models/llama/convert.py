"""Llama's published layout (Hugging Face `LlamaForCausalLM`) <-> the zoo's `llama`, as data.

config.json comes in two layouts: transformers 5 writes `rope_parameters` (with `rope_theta`
inside), 4.x wrote `rope_theta` at the top level and the scaling under `rope_scaling`; both are
read, the 5 layout is written."""

from __future__ import annotations

from typing import Any

from zoo.config.types import SettingError
from zoo.models.conversion import Conversion, Row, require

_BLOCK = "model.layers.{layer}."
ROWS = (
    Row("model.embed_tokens.weight", "embed/embedding"),
    Row(_BLOCK + "input_layernorm.weight", "blocks/attn_norm/scale"),
    # Linear keeps [out, in]: transposed into the zoo's (in, out) kernels
    Row(_BLOCK + "self_attn.q_proj.weight", "blocks/attn/query/kernel", "transpose"),
    Row(_BLOCK + "self_attn.k_proj.weight", "blocks/attn/key/kernel", "transpose"),
    Row(_BLOCK + "self_attn.v_proj.weight", "blocks/attn/value/kernel", "transpose"),
    Row(_BLOCK + "self_attn.o_proj.weight", "blocks/attn/out/kernel", "transpose"),
    Row(_BLOCK + "post_attention_layernorm.weight", "blocks/mlp_norm/scale"),
    Row(_BLOCK + "mlp.gate_proj.weight", "blocks/mlp/gate/kernel", "transpose"),
    Row(_BLOCK + "mlp.up_proj.weight", "blocks/mlp/up/kernel", "transpose"),
    Row(_BLOCK + "mlp.down_proj.weight", "blocks/mlp/down/kernel", "transpose"),
    Row("model.norm.weight", "norm/scale"),
    Row("lm_head.weight", "head/kernel", "transpose"),  # untied only
)


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `llama` settings of a Llama config.json (either layout)."""
    if config.get("hidden_act", "silu") != "silu":
        raise SettingError(f"config.json: hidden_act={config.get('hidden_act')!r}; only silu")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise SettingError(f"config.json: {key}=true is not supported")
    rope = config.get("rope_parameters")
    if rope is None:  # the 4.x layout
        rope = dict(config.get("rope_scaling") or {})
        rope["rope_theta"] = config.get("rope_theta", 10000.0)
    if not isinstance(rope, dict):
        raise SettingError(f"config.json: rope_parameters={rope!r} is not an object")
    rope = dict(rope)
    theta = require(rope, "rope_theta", (int, float))
    kind = rope.pop("rope_type", rope.pop("type", "default"))
    rope.pop("rope_theta")
    scaling = {} if kind == "default" else {"rope_type": kind, **rope}
    head_dim = config.get("head_dim")
    return {
        "vocab_size": require(config, "vocab_size"),
        "d_model": require(config, "hidden_size"),
        "num_heads": require(config, "num_attention_heads"),
        "num_kv_heads": config.get("num_key_value_heads")
        and require(config, "num_key_value_heads"),
        "head_dim": None if head_dim is None else require(config, "head_dim"),
        "num_layers": require(config, "num_hidden_layers"),
        "mlp_dim": require(config, "intermediate_size"),
        "max_len": require(config, "max_position_embeddings"),
        "rope_theta": float(theta),
        "rope_scaling": scaling,
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "eps": float(require(config, "rms_norm_eps", (int, float))),
    }


def config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A config.json `LlamaForCausalLM` loads (transformers 5 layout), for `llama` settings."""
    heads = kwargs["num_heads"]
    rope = {"rope_theta": kwargs["rope_theta"], "rope_type": "default"}
    if kwargs["rope_scaling"]:
        rope = {**dict(kwargs["rope_scaling"]), "rope_theta": kwargs["rope_theta"]}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "vocab_size": kwargs["vocab_size"],
        "hidden_size": kwargs["d_model"],
        "num_attention_heads": heads,
        "num_key_value_heads": kwargs["num_kv_heads"] or heads,
        "head_dim": kwargs["head_dim"] or kwargs["d_model"] // heads,
        "num_hidden_layers": kwargs["num_layers"],
        "intermediate_size": kwargs["mlp_dim"],
        "max_position_embeddings": kwargs["max_len"],
        "rope_parameters": rope,
        "tie_word_embeddings": kwargs["tie_embeddings"],
        "rms_norm_eps": kwargs["eps"],
        "dtype": kwargs["param_dtype"],
    }


CONVERSION = Conversion(model="llama", rows=ROWS, settings=settings, config=config)
