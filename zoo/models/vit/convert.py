"""timm's and Hugging Face's published ViT layouts onto the zoo's `vit` state paths: settings
from config.json, and conversion tables as in zoo/models/resnet/convert.py. Per-layer tensors
are stacked into the scan axis; timm's fused `qkv` is split into query, key and value.

A ViT loaded at another image size resamples its position table as its library does
(`resample_positions`): timm bicubic with antialias (`jax.image.resize` "cubic"), Hugging Face
PyTorch's plain bicubic (a = -0.75, half-pixel centres, edges clamped).
"""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import ZooError
from zoo.models.resnet.convert import Row, Transform, linear, same, stack

# timm's registered architectures: (d_model, num_layers, num_heads) at patch 16 or 32
TIMM_WIDTHS = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
IGNORED = re.compile(r"^$")  # nothing of a ViT file goes unused


def timm_settings(config: dict[str, Any], architecture: str) -> dict[str, Any]:
    """The zoo `vit` settings of a timm config.json (`architecture`, `model_args`)."""
    found = re.fullmatch(r"vit_(tiny|small|base|large)_patch(\d+)_(\d+)", architecture)
    if found is None:
        raise ZooError(
            f"timm architecture {architecture!r} is not supported (vit_<tiny|small|base|large>"
            "_patch<P>_<size>)"
        )
    d_model, depth, heads = TIMM_WIDTHS[found[1]]
    args = dict(config.get("model_args") or {})
    known = {"num_classes", "img_size", "patch_size", "embed_dim", "depth", "num_heads"}
    known |= {"mlp_ratio", "in_chans", "global_pool", "class_token"}
    if sorted(set(args) - known):
        raise ZooError(f"timm {architecture}: model_args {sorted(set(args) - known)} unsupported")
    pool = {"token": "cls", "avg": "mean"}.get(args.get("global_pool", "token"))
    if pool is None or args.get("class_token", pool == "cls") != (pool == "cls"):
        raise ZooError(
            f"timm {architecture}: global_pool={args.get('global_pool')!r} with class_token="
            f"{args.get('class_token')!r} is not supported (token with, avg without)"
        )
    size = args.get("img_size", int(found[3]))
    size = size[0] if isinstance(size, list) else size
    mlp_ratio = args.get("mlp_ratio", 4.0)
    if mlp_ratio != int(mlp_ratio):
        raise ZooError(f"timm {architecture}: mlp_ratio={mlp_ratio} is not a whole number")
    return {
        "image_size": size,
        "patch_size": args.get("patch_size", int(found[2])),
        "in_channels": args.get("in_chans", 3),
        "d_model": args.get("embed_dim", d_model),
        "num_heads": args.get("num_heads", heads),
        "num_layers": args.get("depth", depth),
        "mlp_ratio": int(mlp_ratio),
        "pool": pool,
        "norm_eps": 1e-6,
        "out_features": config.get("num_classes", args.get("num_classes", 1000)),
    }


def hf_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The zoo `vit` settings of a Hugging Face ViTConfig's config.json."""
    hidden = config.get("hidden_size", 768)
    inner = config.get("intermediate_size", 3072)
    if inner % hidden:
        raise ZooError(f"Hugging Face ViT intermediate_size={inner} is not a multiple of {hidden}")
    for key, wanted in (("hidden_act", "gelu"), ("qkv_bias", True)):
        if config.get(key, wanted) != wanted:
            raise ZooError(f"Hugging Face ViT {key}={config[key]!r} is not supported")
    return {
        "image_size": config.get("image_size", 224),
        "patch_size": config.get("patch_size", 16),
        "in_channels": config.get("num_channels", 3),
        "d_model": hidden,
        "num_heads": config.get("num_attention_heads", 12),
        "num_layers": config.get("num_hidden_layers", 12),
        "mlp_ratio": inner // hidden,
        "pool": "cls",
        "norm_eps": config.get("layer_norm_eps", 1e-12),
        "out_features": len(config.get("id2label") or {}) or config.get("num_labels", 2),
    }


def patch(t: list[Any]) -> Any:
    return t[0].transpose(2, 3, 1, 0)


def squeezed(t: list[Any]) -> Any:
    """[1, T, D] or [1, 1, D] -> [T, D] or [D]."""
    return t[0].reshape(t[0].shape[1:]) if t[0].shape[1] != 1 else t[0].reshape(-1)


def stacked(layers: int, name: str, each: Transform) -> tuple[list[str], Transform]:
    """The per-layer tensors `name.format(l)` for every layer, transformed, stacked on axis 0."""
    sources = [name.format(layer) for layer in range(layers)]
    return sources, lambda t: stack([each([x]) for x in t])


def _qkv_part(index: int, kind: str) -> Transform:
    def take(t: list[Any]) -> Any:
        third = t[0].shape[0] // 3
        part = t[0][index * third : (index + 1) * third]
        return part.T if kind == "kernel" else part

    return take


_QKV = {"query": 0, "key": 1, "value": 2}
_TIMM_BLOCK = {
    "attn_norm/scale": "norm1.weight",
    "attn_norm/bias": "norm1.bias",
    "mlp_norm/scale": "norm2.weight",
    "mlp_norm/bias": "norm2.bias",
    "attn/out/kernel": "attn.proj.weight",
    "attn/out/bias": "attn.proj.bias",
    "mlp/fc1/kernel": "mlp.fc1.weight",
    "mlp/fc1/bias": "mlp.fc1.bias",
    "mlp/fc2/kernel": "mlp.fc2.weight",
    "mlp/fc2/bias": "mlp.fc2.bias",
}


def timm_rows(settings: dict[str, Any]) -> list[Row]:
    """The timm table for a ViT of these settings (its depth sets the per-layer sources)."""
    n = settings["num_layers"]

    def block(m: re.Match) -> tuple[list[str], Transform]:
        rest = m[1]
        if found := re.fullmatch(r"attn/(query|key|value)/(kernel|bias)", rest):
            kind = "weight" if found[2] == "kernel" else "bias"
            return stacked(n, f"blocks.{{}}.attn.qkv.{kind}", _qkv_part(_QKV[found[1]], found[2]))
        each = linear if rest.endswith("kernel") else same
        return stacked(n, f"blocks.{{}}.{_TIMM_BLOCK[rest]}", each)

    final_norm = "norm" if settings["pool"] == "cls" else "fc_norm"
    return [
        (r"patch_embed/kernel", lambda m: (["patch_embed.proj.weight"], patch)),
        (r"patch_embed/bias", lambda m: (["patch_embed.proj.bias"], same)),
        (r"cls_token", lambda m: (["cls_token"], squeezed)),
        (r"positions", lambda m: (["pos_embed"], squeezed)),
        (r"blocks/(.+)", block),
        (r"norm/scale", lambda m: ([f"{final_norm}.weight"], same)),
        (r"norm/bias", lambda m: ([f"{final_norm}.bias"], same)),
        (r"head/kernel", lambda m: (["head.weight"], linear)),
        (r"head/bias", lambda m: (["head.bias"], same)),
    ]


_HF_BLOCK = {
    "attn_norm/scale": "layernorm_before.weight",
    "attn_norm/bias": "layernorm_before.bias",
    "mlp_norm/scale": "layernorm_after.weight",
    "mlp_norm/bias": "layernorm_after.bias",
    "attn/query/kernel": "attention.attention.query.weight",
    "attn/query/bias": "attention.attention.query.bias",
    "attn/key/kernel": "attention.attention.key.weight",
    "attn/key/bias": "attention.attention.key.bias",
    "attn/value/kernel": "attention.attention.value.weight",
    "attn/value/bias": "attention.attention.value.bias",
    "attn/out/kernel": "attention.output.dense.weight",
    "attn/out/bias": "attention.output.dense.bias",
    "mlp/fc1/kernel": "intermediate.dense.weight",
    "mlp/fc1/bias": "intermediate.dense.bias",
    "mlp/fc2/kernel": "output.dense.weight",
    "mlp/fc2/bias": "output.dense.bias",
}


def hf_rows(settings: dict[str, Any]) -> list[Row]:
    """The Hugging Face table for a ViT of these settings."""
    n = settings["num_layers"]

    def block(m: re.Match) -> tuple[list[str], Transform]:
        each = linear if m[1].endswith("kernel") else same
        return stacked(n, f"vit.encoder.layer.{{}}.{_HF_BLOCK[m[1]]}", each)

    emb = "vit.embeddings"
    return [
        (r"patch_embed/kernel", lambda m: ([f"{emb}.patch_embeddings.projection.weight"], patch)),
        (r"patch_embed/bias", lambda m: ([f"{emb}.patch_embeddings.projection.bias"], same)),
        (r"cls_token", lambda m: ([f"{emb}.cls_token"], squeezed)),
        (r"positions", lambda m: ([f"{emb}.position_embeddings"], squeezed)),
        (r"blocks/(.+)", block),
        (r"norm/scale", lambda m: (["vit.layernorm.weight"], same)),
        (r"norm/bias", lambda m: (["vit.layernorm.bias"], same)),
        (r"head/kernel", lambda m: (["classifier.weight"], linear)),
        (r"head/bias", lambda m: (["classifier.bias"], same)),
    ]


def _cubic_matrix(old: int, new: int, a: float = -0.75) -> np.ndarray:
    """PyTorch's bicubic (align_corners=False, no antialias) as a [new, old] matrix: half-pixel
    centres, Keys kernel with `a`, indices clamped at the edges."""
    matrix = np.zeros((new, old), np.float64)
    scale = old / new
    for i in range(new):
        x = (i + 0.5) * scale - 0.5
        base = math.floor(x)
        t = x - base
        for offset in range(-1, 3):
            d = abs(offset - t)
            if d <= 1:
                w = (a + 2) * d**3 - (a + 3) * d**2 + 1
            elif d < 2:
                w = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
            else:
                w = 0.0
            matrix[i, min(max(base + offset, 0), old - 1)] += w
    return matrix


def resample_positions(table: Any, old_grid: int, new_grid: int, prefix: int, style: str) -> Any:
    """A position table `[prefix + old_grid**2, D]` for `new_grid**2` patches, the class token's
    row (`prefix` rows) kept: `style` "timm" (bicubic, antialiased) or "hf" (PyTorch bicubic)."""
    table = jnp.asarray(table, jnp.float32)
    head, grid = table[:prefix], table[prefix:].reshape(old_grid, old_grid, -1)
    if style == "timm":
        grid = jax.image.resize(grid, (new_grid, new_grid, grid.shape[-1]), method="cubic")
    else:
        m = jnp.asarray(_cubic_matrix(old_grid, new_grid), jnp.float32)
        grid = jnp.einsum("ih,jw,hwd->ijd", m, m, grid)
    return jnp.concatenate([head, grid.reshape(new_grid * new_grid, -1)])
