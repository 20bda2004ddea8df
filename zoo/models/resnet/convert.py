"""timm's and Hugging Face's published ResNet layouts onto the zoo's `resnet` state paths.

Two things per layout: the zoo settings a published config.json describes (`*_settings`), and
a conversion table (`TIMM`, `HF`): rows `(zoo path regex, sources)` where `sources(match)` names
the published tensors the zoo tensor is made of and the transform that makes it. Kernels are
OIHW in PyTorch files and HWIO in the zoo; linear weights are [out, in] there, [in, out] here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import ZooError

Transform = Callable[[list[Any]], Any]  # the source tensors (jnp arrays) -> the zoo tensor
Row = tuple[str, Callable[[re.Match], tuple[list[str], Transform]]]

# timm's registered architectures: block kind and blocks per stage (model_args may override)
TIMM_ARCHITECTURES = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet26": ("bottleneck", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}
BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
IGNORED = re.compile(r".*\.num_batches_tracked$")  # a counter the forward never uses


# Transforms use only array methods (and `stack`): numpy arrays when reading (no device
# program per shape), tracers under `jax.eval_shape` when the loader asks for shapes alone.


def conv(t: list[Any]) -> Any:
    """One OIHW kernel -> HWIO."""
    return t[0].transpose(2, 3, 1, 0)


def linear(t: list[Any]) -> Any:
    """One [out, in] weight -> [in, out]."""
    return t[0].T


def stack(arrays: list[Any]) -> Any:
    """`np.stack`, or `jnp.stack` for tracers (shapes only)."""
    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        return jnp.stack(arrays)
    return np.stack(arrays)


def same(t: list[Any]) -> Any:
    return t[0]


def _norm(prefix: str, leaf: str) -> tuple[list[str], Transform]:
    return [f"{prefix}.{BN[leaf]}"], same


def timm_settings(config: dict[str, Any], architecture: str) -> dict[str, Any]:
    """The zoo `resnet` settings of a timm config.json (`architecture`, `model_args`)."""
    if architecture not in TIMM_ARCHITECTURES:
        known = ", ".join(TIMM_ARCHITECTURES)
        raise ZooError(f"timm architecture {architecture!r} is not supported (known: {known})")
    block, layers = TIMM_ARCHITECTURES[architecture]
    args = config.get("model_args") or {}
    unsupported = sorted(
        set(args) - {"num_classes", "layers", "channels", "in_chans", "global_pool"}
    )
    if unsupported or args.get("global_pool", "avg") != "avg":
        raise ZooError(f"timm {architecture} with model_args {unsupported} is not supported")
    layers = list(args.get("layers", layers))
    return {
        "block": block,
        "layers": layers,
        "widths": list(args.get("channels", [64 * 2**i for i in range(len(layers))])),
        "stem_width": 64,  # timm's plain stem is 64 wide whatever stem_width says
        "in_channels": args.get("in_chans", 3),
        "out_features": config.get("num_classes", args.get("num_classes", 1000)),
    }


def hf_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The zoo `resnet` settings of a Hugging Face ResNetConfig's config.json."""
    block = config.get("layer_type", "bottleneck")
    if block not in ("basic", "bottleneck"):
        raise ZooError(f"Hugging Face ResNet layer_type={block!r} is not supported")
    for key, wanted in (
        ("hidden_act", "relu"),
        ("downsample_in_first_stage", False),
        ("downsample_in_bottleneck", False),
    ):
        if config.get(key, wanted) != wanted:
            raise ZooError(f"Hugging Face ResNet {key}={config[key]!r} is not supported")
    expansion = 4 if block == "bottleneck" else 1
    sizes = list(config.get("hidden_sizes", [256, 512, 1024, 2048]))
    if any(s % expansion for s in sizes):
        raise ZooError(f"Hugging Face ResNet hidden_sizes {sizes} are not multiples of 4")
    return {
        "block": block,
        "layers": list(config.get("depths", [3, 4, 6, 3])),
        "widths": [s // expansion for s in sizes],
        "stem_width": config.get("embedding_size", 64),
        "in_channels": config.get("num_channels", 3),
        "out_features": len(config.get("id2label") or {}) or config.get("num_labels", 2),
    }


def _timm_block(m: re.Match) -> tuple[list[str], Transform]:
    stage, block, rest = int(m[1]) + 1, m[2], m[3]
    prefix = f"layer{stage}.{block}"
    if found := re.fullmatch(r"conv(\d)/kernel", rest):
        return [f"{prefix}.conv{found[1]}.weight"], conv
    if found := re.fullmatch(r"norm(\d)/(\w+)", rest):
        return _norm(f"{prefix}.bn{found[1]}", found[2])
    if rest == "downsample/conv/kernel":
        return [f"{prefix}.downsample.0.weight"], conv
    found = re.fullmatch(r"downsample/norm/(\w+)", rest)
    return _norm(f"{prefix}.downsample.1", found[1])


TIMM: list[Row] = [
    (r"stem/conv/kernel", lambda m: (["conv1.weight"], conv)),
    (r"stem/norm/(\w+)", lambda m: _norm("bn1", m[1])),
    (r"stages/(\d+)/(\d+)/(.+)", _timm_block),
    (r"head/kernel", lambda m: (["fc.weight"], linear)),
    (r"head/bias", lambda m: (["fc.bias"], same)),
]


def _hf_block(m: re.Match) -> tuple[list[str], Transform]:
    prefix = f"resnet.encoder.stages.{m[1]}.layers.{m[2]}"
    rest = m[3]
    if found := re.fullmatch(r"conv(\d)/kernel", rest):
        return [f"{prefix}.layer.{int(found[1]) - 1}.convolution.weight"], conv
    if found := re.fullmatch(r"norm(\d)/(\w+)", rest):
        return _norm(f"{prefix}.layer.{int(found[1]) - 1}.normalization", found[2])
    if rest == "downsample/conv/kernel":
        return [f"{prefix}.shortcut.convolution.weight"], conv
    found = re.fullmatch(r"downsample/norm/(\w+)", rest)
    return _norm(f"{prefix}.shortcut.normalization", found[1])


HF_STEM = "resnet.embedder.embedder"
HF: list[Row] = [
    (r"stem/conv/kernel", lambda m: ([f"{HF_STEM}.convolution.weight"], conv)),
    (r"stem/norm/(\w+)", lambda m: _norm(f"{HF_STEM}.normalization", m[1])),
    (r"stages/(\d+)/(\d+)/(.+)", _hf_block),
    (r"head/kernel", lambda m: (["classifier.1.weight"], linear)),
    (r"head/bias", lambda m: (["classifier.1.bias"], same)),
]
