"""LoRA by path: low-rank adapters on the linear layers that path patterns select, in any model.

`add_lora(model, rank=..., targets=[...])` gives each selected linear layer (the zoo's
`InnerLinear`, `nnx.Linear`, or a family's own layer marked `zoo_linear = True`: `x @ kernel
(+ bias)` with `kernel` of shape `(in, out)`) two parameters beside its kernel, `<layer>/lora_a`
`(in, rank)` and `<layer>/lora_b` `(rank, out)`, and computes `layer(x) + (alpha / rank) *
dropout(x) @ lora_a @ lora_b`. `lora_b` starts at zero, so a model with fresh adapters computes
exactly what it did before. Layers of stacked blocks (`create_stacked`) get stacked adapters, one
per block along the same leading axis, so a scan over the blocks slices them with the kernels.

The layer stays where it was, under the same path, with its own kernel and bias: only its class
becomes a subclass of its own that adds the adapters' term (one subclass per layer class), so
loading, freezing, sharding and inspection address it as before. `merge_lora(model)` returns a
copy whose kernels hold `kernel + (alpha / rank) * lora_a @ lora_b`, a plain model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.errors import ZooError
from zoo.models.layers import InnerLinear, create_stacked, in_stacked, stacked_paths
from zoo.paths import check_all_match, first_match, nearest_hint, path_str

DEFAULT_TARGETS = ("**/attn/*", "**/self_attn/*", "**/attention/*")  # as zoo.config's default
ADAPTERS = ("lora_a", "lora_b")
TARGETS_KEY = "model.lora.targets"


def is_linear(module: Any) -> bool:
    """Whether `module` computes `x @ kernel (+ bias)` with `kernel` `(..., in, out)`."""
    linear = isinstance(module, InnerLinear | nnx.Linear) or getattr(module, "zoo_linear", False)
    return bool(linear) and isinstance(getattr(module, "kernel", None), nnx.Param)


def _lora_call(self: Any, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
    """A layer with adapters: its own class's output plus the scaled low-rank term."""
    out = self.zoo_lora_base.__call__(self, x, *args, **kwargs)
    h = x if self.lora_dropout is None else self.lora_dropout(x)
    a, b = self.lora_a[...], self.lora_b[...]
    delta = (h.astype(out.dtype) @ a.astype(out.dtype)) @ b.astype(out.dtype)
    return out + (delta * self.lora_scale).astype(out.dtype)


_CLASSES: dict[type, type] = {}


def _with_lora(cls: type) -> type:
    """The subclass of layer class `cls` that adds the adapters' term (one per class). It adds
    no slots, so that a layer's class can be swapped for it and back."""
    if cls not in _CLASSES:
        namespace = {"__slots__": (), "__call__": _lora_call, "zoo_lora_base": cls}
        _CLASSES[cls] = type(f"Lora{cls.__name__}", (cls,), namespace)
    return _CLASSES[cls]


def has_lora(layer: Any) -> bool:
    """Whether `layer` is a linear layer with adapters."""
    return type(layer) in _CLASSES.values()


def linear_layers(model: nnx.Module) -> dict[str, nnx.Module]:
    """The model's linear layers by state path (each once, in graph order)."""
    return {
        path_str(path): node
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Module) and path and is_linear(node)
    }


def lora_layers(model: nnx.Module) -> dict[str, nnx.Module]:
    """The model's layers with adapters by state path."""
    return {path_str(path): node for path, node in nnx.iter_graph(model) if has_lora(node) and path}


def add_lora(
    model: nnx.Module,
    *,
    rank: int,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Sequence[str] = DEFAULT_TARGETS,
    rngs: nnx.Rngs,
) -> list[str]:
    """Give the linear layers `targets` selects adapters of `rank` (in place); returns their paths.

    Args:
        model: any nnx model.
        rank: the adapters' rank (>= 1).
        alpha: the adapters' term is scaled by `alpha / rank`.
        dropout: dropout on the adapters' input in training mode.
        targets: path patterns (zoo.paths) of linear layers, or of modules whose linear layers
            all get adapters. Every pattern must select one, except with the default patterns
            (the attention projections under the names decoder families give them), of which
            one must.
        rngs: draws `lora_a` (uniform in +-1/sqrt(in), as PEFT's Kaiming init) and the dropout
            masks' keys.

    Raises:
        ZooError: a pattern that selects no linear layer (naming the nearest), a layer that has
            adapters already, or a rank beyond the layer's widths.
    """
    layers = linear_layers(model)
    paths = list(layers)
    targets = list(targets)
    if tuple(targets) == DEFAULT_TARGETS:
        if not any(first_match(targets, p) for p in paths):
            raise ZooError(
                f"{TARGETS_KEY}: the default patterns ({', '.join(targets)}) select none of the "
                f"model's linear layers; name them ({nearest_hint('attn', paths)})"
            )
    else:
        check_all_match(targets, paths, what=f"{TARGETS_KEY} pattern")
    chosen = [p for p in paths if first_match(targets, p) is not None]
    stacked = stacked_paths(model)
    for path in chosen:
        layer = layers[path]
        if has_lora(layer):
            raise ZooError(f"{path}: already has LoRA adapters")
        kernel = layer.kernel
        lead, (n_in, n_out) = kernel.shape[:-2], kernel.shape[-2:]
        if in_stacked(path + "/kernel", stacked) != bool(lead):
            raise ZooError(f"{path}: a kernel of shape {kernel.shape} is not a linear layer's")
        dtype = kernel[...].dtype
        bound = 1.0 / jnp.sqrt(n_in)
        a = jax.random.uniform(rngs.params(), (*lead, n_in, rank), jnp.float32, -bound, bound)
        layer.lora_a = nnx.Param(a.astype(dtype))
        layer.lora_b = nnx.Param(jnp.zeros((*lead, rank, n_out), dtype))
        layer.lora_rank, layer.lora_scale = rank, float(alpha) / rank
        if dropout:  # stacked layers get stacked dropout streams, one per block
            drop = lambda r: nnx.Dropout(dropout, rngs=r)  # noqa: E731
            key = nnx.Rngs(dropout=rngs.params())
            layer.lora_dropout = create_stacked(drop, lead[0], key) if lead else drop(key)
        else:
            layer.lora_dropout = None
        layer.__class__ = _with_lora(type(layer))
    return chosen


def merge_lora(model: nnx.Module) -> nnx.Module:
    """A copy of `model` with every adapter folded into its kernel, `kernel + (alpha / rank) *
    lora_a @ lora_b` (computed in float32, kept in the kernel's dtype), and the adapters gone:
    a plain model of the same family that computes what `model` does in eval mode.

    Args:
        model: a model, with or without adapters.

    Returns:
        The merged copy (`model` itself when it has no adapters); `model` is left as it was.
    """
    if not lora_layers(model):
        return model
    merged = nnx.clone(model)
    for layer in lora_layers(merged).values():
        kernel = layer.kernel[...]
        a, b = (x.astype(jnp.float32) for x in (layer.lora_a[...], layer.lora_b[...]))
        update = (a @ b) * layer.lora_scale
        layer.kernel[...] = (kernel.astype(jnp.float32) + update).astype(kernel.dtype)
        for name in (*ADAPTERS, "lora_rank", "lora_scale", "lora_dropout"):
            delattr(layer, name)
        layer.__class__ = layer.zoo_lora_base
    return merged


def lora_of(model_cfg: Any) -> dict[str, Any] | None:
    """`model.lora` as keyword arguments for `add_lora` when its rank is above 0; else None."""
    settings = model_cfg.get("lora") if hasattr(model_cfg, "get") else None
    if not settings or not settings.get("rank"):
        return None
    return {
        "rank": int(settings["rank"]),
        "alpha": float(settings.get("alpha", 16.0)),
        "dropout": float(settings.get("dropout", 0.0)),
        "targets": [str(t) for t in settings.get("targets", DEFAULT_TARGETS)],
    }
