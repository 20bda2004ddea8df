"""GPT-2's published layout (Hugging Face `GPT2LMHeadModel`) <-> the zoo's `gpt2`, as data."""

from __future__ import annotations

from typing import Any

from zoo.config.types import SettingError
from zoo.models.conversion import Conversion, Row, require

_BLOCK = "transformer.h.{layer}."
ROWS = (
    Row("transformer.wte.weight", "embed/embedding"),
    Row("transformer.wpe.weight", "positions/embedding"),
    Row(_BLOCK + "ln_1.weight", "blocks/attn_norm/scale"),
    Row(_BLOCK + "ln_1.bias", "blocks/attn_norm/bias"),
    # Conv1D keeps [in, out]: the zoo's kernel layout already
    Row(_BLOCK + "attn.c_attn.weight", "blocks/attn/qkv/kernel"),
    Row(_BLOCK + "attn.c_attn.bias", "blocks/attn/qkv/bias"),
    Row(_BLOCK + "attn.c_proj.weight", "blocks/attn/out/kernel"),
    Row(_BLOCK + "attn.c_proj.bias", "blocks/attn/out/bias"),
    Row(_BLOCK + "ln_2.weight", "blocks/mlp_norm/scale"),
    Row(_BLOCK + "ln_2.bias", "blocks/mlp_norm/bias"),
    Row(_BLOCK + "mlp.c_fc.weight", "blocks/mlp/up/kernel"),
    Row(_BLOCK + "mlp.c_fc.bias", "blocks/mlp/up/bias"),
    Row(_BLOCK + "mlp.c_proj.weight", "blocks/mlp/down/kernel"),
    Row(_BLOCK + "mlp.c_proj.bias", "blocks/mlp/down/bias"),
    Row("transformer.ln_f.weight", "norm/scale"),
    Row("transformer.ln_f.bias", "norm/bias"),
)
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh form of GELU


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `gpt2` settings of a GPT-2 config.json."""
    activation = config.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise SettingError(
            f"config.json: activation_function={activation!r} is not supported ({ACTIVATIONS})"
        )
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(key):
            raise SettingError(f"config.json: {key}=true is not supported")
    if config.get("tie_word_embeddings", True) is not True:
        raise SettingError("config.json: tie_word_embeddings=false is not supported for gpt2")
    inner = config.get("n_inner")
    return {
        "vocab_size": require(config, "vocab_size"),
        "d_model": require(config, "n_embd"),
        "num_heads": require(config, "n_head"),
        "num_layers": require(config, "n_layer"),
        "mlp_dim": None if inner is None else require(config, "n_inner"),
        "max_len": require(config, "n_positions"),
        "eps": float(config.get("layer_norm_epsilon", 1e-5)),
    }


def config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A config.json `GPT2LMHeadModel` loads, for `gpt2` settings `kwargs`."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": kwargs["vocab_size"],
        "n_embd": kwargs["d_model"],
        "n_head": kwargs["num_heads"],
        "n_layer": kwargs["num_layers"],
        "n_inner": kwargs["mlp_dim"],
        "n_positions": kwargs["max_len"],
        "layer_norm_epsilon": kwargs["eps"],
        "tie_word_embeddings": True,
        "dtype": kwargs["param_dtype"],
    }


CONVERSION = Conversion(
    model="gpt2",
    rows=ROWS,
    settings=settings,
    config=config,
    # old files (openai-community/gpt2) keep causal-mask buffers and lack the prefix
    ignored=(r"\.attn\.(masked_)?bias$",),
    aliases=((r"^(?!transformer\.|lm_head\.)", "transformer."),),
)
