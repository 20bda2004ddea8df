"""ResNet (v1.5: a bottleneck's stride on its 3x3 convolution) over NHWC images.

ResNet -> stem (conv, norm) -> stages[s][b] (BasicBlock | Bottleneck: conv1, norm1, conv2, norm2,
(conv3, norm3), downsample/conv, downsample/norm) -> head, so the state reads like the
architecture: `stages/1/0/conv1/kernel` is HWIO. Padding is PyTorch's, symmetric (k // 2 on
every side), so published weights give the same numbers; JAX's "SAME" pads a stride-2
convolution of an even input (0, 1) instead.

BatchNorm's running statistics are `nnx.BatchStat` variables, not parameters: a run keeps them
in its state beside the parameters (never in the optimizer), they update in `model.train()` and
normalise in `model.eval()`; `freeze_norm` keeps them fixed in training too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from zoo.models.layers import InnerLinear, kept_apart, precision_kwargs
from zoo.models.registry import register_model
from zoo.models.resnet import settings  # noqa: F401  (the declaration register_model uses)
from zoo.models.resnet.settings import EXPANSION

BN_EPS = 1e-5  # PyTorch's, as timm and transformers use
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1: running = 0.9 * running + 0.1 * batch


def _conv_init(key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
    """He's normal init over fan-out, as timm's ResNet (plain normal: cheap to compile)."""
    fan_out = shape[0] * shape[1] * shape[3]
    return (kept_apart(jax.random.normal(key, shape)) * (2.0 / fan_out) ** 0.5).astype(dtype)


class Norm(nnx.BatchNorm):
    """BatchNorm whose running statistics stay fixed in training too when `frozen` (timm's
    `freeze_batch_norm_2d`): it then always normalises with them and never updates them."""

    def __init__(self, features: int, *, frozen: bool = False, rngs: nnx.Rngs, **precision):
        super().__init__(features, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs, **precision)
        self.frozen = frozen

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        return super().__call__(x, use_running_average=True if self.frozen else use_running_average)


def conv(
    n_in: int, n_out: int, kernel: int, stride: int, rngs: nnx.Rngs, **precision: DTypeLike
) -> nnx.Conv:
    """A bias-free convolution padded as PyTorch pads it: `kernel // 2` on every side."""
    pad = kernel // 2
    return nnx.Conv(
        n_in,
        n_out,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=_conv_init,
        rngs=rngs,
        **precision,
    )


class ConvNorm(nnx.Module):
    """conv then norm (no activation): the stem and the projection shortcut."""

    def __init__(self, n_in, n_out, kernel, stride, *, frozen, rngs, **precision):
        self.conv = conv(n_in, n_out, kernel, stride, rngs, **precision)
        self.norm = Norm(n_out, frozen=frozen, rngs=rngs, **precision)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.norm(self.conv(x))


class Block(nnx.Module):
    """A residual block: `relu(body(x) + shortcut(x))`. `basic`: 3x3 (stride) then 3x3;
    `bottleneck`: 1x1 to `width`, 3x3 (stride), 1x1 to 4 x `width`. The shortcut is a strided
    1x1 convolution with norm where the width or the resolution changes, else the identity."""

    def __init__(self, kind, n_in, width, stride, *, frozen, rngs, **precision):
        n_out = width * EXPANSION[kind]
        if kind == "basic":
            shapes = [(n_in, width, 3, stride), (width, width, 3, 1)]
        else:
            shapes = [(n_in, width, 1, 1), (width, width, 3, stride), (width, n_out, 1, 1)]
        for i, (a, b, k, s) in enumerate(shapes, start=1):
            setattr(self, f"conv{i}", conv(a, b, k, s, rngs, **precision))
            setattr(self, f"norm{i}", Norm(b, frozen=frozen, rngs=rngs, **precision))
        self.depth = len(shapes)
        self.downsample = (
            ConvNorm(n_in, n_out, 1, stride, frozen=frozen, rngs=rngs, **precision)
            if stride != 1 or n_in != n_out
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i in range(1, self.depth + 1):
            h = getattr(self, f"norm{i}")(getattr(self, f"conv{i}")(h))
            if i < self.depth:
                h = jax.nn.relu(h)
        shortcut = self.downsample(x) if self.downsample is not None else x
        return jax.nn.relu(h + shortcut)


class Stem(ConvNorm):
    """7x7 stride-2 convolution, norm and ReLU; the 3x3 stride-2 max pool follows in ResNet
    (so that `stem` features are timm's `act1`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(super().__call__(x))


class Stage(nnx.List):
    """The blocks of one resolution, applied in order."""

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self:
            x = block(x)
        return x


@register_model("resnet")
class ResNet(nnx.Module):
    """NHWC images `(..., H, W, in_channels)` -> logits `(..., out_features)`, or the pooled
    features `(..., channels)` without a head (`out_features` 0 or None).

    Settings and their checks: `ResNetSettings` (settings.py beside this file)."""

    def __init__(
        self,
        block: str = "basic",
        layers: Sequence[int] = (1, 1, 1, 1),
        widths: Sequence[int] = (16, 32, 64, 128),
        *,
        stem_width: int = 16,
        in_channels: int = 3,
        out_features: int | None = 1000,
        freeze_norm: bool = False,
        dtype: str = "float32",
        param_dtype: str = "float32",
        rngs: nnx.Rngs,
    ):
        precision = precision_kwargs(dtype, param_dtype)
        frozen = {"frozen": freeze_norm, "rngs": rngs, **precision}
        self.stem = Stem(in_channels, stem_width, 7, 2, **frozen)
        stages, n_in = [], stem_width
        for s, (count, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for b in range(count):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(Block(block, n_in, width, stride, **frozen))
                n_in = width * EXPANSION[block]
            stages.append(Stage(blocks))
        self.stages = nnx.List(stages)
        self.num_features = n_in
        self.head = (
            InnerLinear(n_in, out_features, rngs=rngs, **precision) if out_features else None
        )

    def forward_features(self, x: jax.Array) -> jax.Array:
        """The last stage's feature map `(..., h, w, channels)`."""
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        x = self.stem(x)
        # PyTorch's MaxPool2d(3, 2, padding=1): padded with -inf
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in self.stages:
            x = stage(x)
        return x.reshape(*lead, *x.shape[1:])

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.mean(self.forward_features(x), axis=(-3, -2))
        return self.head(pooled) if self.head is not None else pooled
