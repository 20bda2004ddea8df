"""Make the vision parity fixtures under tests/fixtures/vision/: tiny, randomly initialised timm
and Hugging Face transformers image classifiers (ResNet and ViT, float32, 5 classes), and the
PyTorch reference's logits (and timm's intermediate features) for them.

    pip install 'zoo[fixtures]'           # torch, transformers, timm: not needed by the tests
    python tools/make_vision_fixtures.py  # rewrites tests/fixtures/vision/

A timm directory is what `timm.models.push_to_hf_hub` uploads, written by the function it calls,
`timm.models._hub.save_for_hf(model, dir, safe_serialization=True, data_config=...)`: config.json
(`architecture`, `num_classes`, `model_args` rebuilding the tiny shape, `pretrained_cfg` with
input_size, mean and std) and model.safetensors (timm's state_dict, BatchNorm's
num_batches_tracked included). A Hugging Face directory is what `save_pretrained(dir,
safe_serialization=True)` writes, plus the image processor's preprocessor_config.json. Each
has a reference.npz; README.md beside them says what every array holds. Nothing is downloaded.

The reference: the model in eval mode, float32, given `images` (NHWC, already normalised: the
model's input, no mean/std applied) transposed to NCHW. BatchNorm running statistics come from
a few train-mode passes over shifted random batches, and every norm's scale and bias is drawn
at random, so a converter that drops the statistics (checked) or swaps scale and bias fails.

Two runs on one machine write the same bytes (one thread, deterministic kernels, a fixed zip
date); another CPU or torch build may differ in the last bits of the logits.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from fixture_common import (
    FIXTURES,
    describe_tensors,
    fresh_directory,
    make_deterministic,
    randomize_parameters,
    to_numpy,
    write_npz,
)
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from timm.models._hub import save_for_hf
from transformers import (
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

VISION = FIXTURES / "vision"
SIZE, OTHER_SIZE, CLASSES = 32, 48, 5
# Two images for a ResNet (its stem features alone are 16x16x64 floats each); four for a ViT,
# whose logits must tell the exact GELU from the tanh form (5e-4 apart at most) past 1e-4.
# (Two again at the second size.)
RESNET_BATCH, VIT_BATCH = 2, 4
# ViT weights drawn N(0, 0.3) (norm scales 1 + N(0, 0.3)): libraries start them at std 0.02,
# which leaves logits too small for 1e-4 to tell a tanh GELU from the exact one.
VIT_WEIGHT_STD = 0.3
# ResNets keep their library's (He) convolution init; only norm scales and biases are redrawn.
NORM_STD = 0.3


@dataclass(frozen=True)
class Checkpoint:
    """One fixture directory: how to build its model and how to write it."""

    name: str
    seed: int
    build: Callable[[], torch.nn.Module]
    kind: str  # "timm" or "hf"


# timm's plain 7x7 stem is 64 channels whatever `stem_width` says (that sets deep stems only),
# so the first block of every stage has a projection shortcut; layer1.1 has an identity one.
def timm_resnet_basic() -> torch.nn.Module:
    return timm.create_model(
        "resnet18", num_classes=CLASSES, layers=[2, 1, 1, 1], channels=[8, 8, 16, 16]
    )


def timm_resnet_bottleneck() -> torch.nn.Module:
    # a Bottleneck block's output is 4 * channels; the stride sits on its 3x3 conv
    return timm.create_model(
        "resnet50", num_classes=CLASSES, layers=[2, 1, 1, 1], channels=[4, 4, 8, 8]
    )


def timm_vit(**options: object) -> torch.nn.Module:
    return timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=CLASSES,
        img_size=SIZE,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=4,
        mlp_ratio=2.0,
        **options,
    )


def hf_resnet() -> torch.nn.Module:
    # bottleneck blocks as microsoft/resnet-50 (stride on the 3x3 conv), depths with a 2-block stage
    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[16, 16, 32, 32],
        depths=[2, 1, 1, 1],
        layer_type="bottleneck",
        num_labels=CLASSES,
    )
    return ResNetForImageClassification(config)


def hf_vit() -> torch.nn.Module:
    config = ViTConfig(
        image_size=SIZE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=CLASSES,
        attn_implementation="eager",
    )
    return ViTForImageClassification(config)


def checkpoints() -> list[Checkpoint]:
    return [
        Checkpoint("timm_resnet_basic", 10, timm_resnet_basic, "timm"),
        Checkpoint("timm_resnet_bottleneck", 11, timm_resnet_bottleneck, "timm"),
        Checkpoint("timm_vit", 12, timm_vit, "timm"),
        Checkpoint(
            "timm_vit_avg", 13, lambda: timm_vit(global_pool="avg", class_token=False), "timm"
        ),
        Checkpoint("hf_resnet", 14, hf_resnet, "hf"),
        Checkpoint("hf_vit", 15, hf_vit, "hf"),
    ]


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@torch.no_grad()
def set_running_statistics(model: torch.nn.Module, generator: torch.Generator) -> None:
    """A few train-mode passes over batches with mean 0.5 and std 2, so every BatchNorm's
    running mean and variance are far from the 0 and 1 it starts with."""
    model.train()
    for _ in range(4):
        model(torch.randn(8, 3, SIZE, SIZE, generator=generator) * 2.0 + 0.5)
    model.eval()


def images(generator: torch.Generator, batch: int, size: int) -> np.ndarray:
    """A batch of NHWC float32 model inputs, N(0, 1) (already normalised)."""
    return to_numpy(torch.randn(batch, size, size, 3, generator=generator))


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return to_numpy(tensor.permute(0, 2, 3, 1))


@torch.no_grad()
def logits_of(model: torch.nn.Module, batch: np.ndarray, **options: object) -> np.ndarray:
    out = model(nchw(batch), **options)
    return to_numpy(getattr(out, "logits", out))


@torch.no_grad()
def timm_features(model: torch.nn.Module, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Intermediate outputs keyed `features/<timm module name>`.

    ResNet: `forward_intermediates` (its 5 taps: act1, the stem after ReLU and before the max
    pool, then layer1..layer4), as NHWC. ViT: each block's whole output, class token first
    ([B, tokens, D]), taken by a forward hook and checked against `forward_intermediates`
    (which splits off the class token and takes no final norm).
    """
    x = nchw(batch)
    if not hasattr(model, "blocks"):
        taps = [info["module"] for info in model.feature_info]
        _, outputs = model.forward_intermediates(x)
        return {f"features/{tap}": nhwc(out) for tap, out in zip(taps, outputs, strict=True)}
    captured = {}
    hooks = [
        block.register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
        for i, block in enumerate(model.blocks)
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    _, outputs = model.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True)
    for i, out in enumerate(outputs):
        # (patches, prefix tokens) when the model has prefix tokens, the patches alone if not
        whole = torch.cat([out[1], out[0]], dim=1) if isinstance(out, tuple) else out
        if not torch.equal(whole, captured[i]):
            raise RuntimeError(f"blocks.{i}: the hook and forward_intermediates disagree")
    return {f"features/blocks.{i}": to_numpy(captured[i]) for i in sorted(captured)}


def save(spec: Checkpoint, model: torch.nn.Module, directory: Path) -> None:
    """Write the directory as the library publishes it."""
    if spec.kind == "timm":
        save_for_hf(
            model, directory, safe_serialization=True, data_config={"input_size": (3, SIZE, SIZE)}
        )
        return
    model.save_pretrained(directory, safe_serialization=True)
    if isinstance(model, ViTForImageClassification):
        processor = ViTImageProcessor(
            size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    else:
        # as microsoft/resnet-50 ships it: ImageNet statistics, resize to size/0.875, crop
        processor = ConvNextImageProcessor(
            size={"shortest_edge": SIZE},
            crop_pct=0.875,
            image_mean=list(IMAGENET_DEFAULT_MEAN),
            image_std=list(IMAGENET_DEFAULT_STD),
        )
    processor.save_pretrained(directory)


def load(spec: Checkpoint, directory: Path, **options: object) -> torch.nn.Module:
    """The library's own loader on the written directory."""
    if spec.kind == "timm":
        return timm.create_model(f"local-dir:{directory}", pretrained=True, **options).eval()
    model_class = type(spec.build())
    return model_class.from_pretrained(directory, attn_implementation="eager").eval()


@torch.no_grad()
def other_size(
    spec: Checkpoint, model: torch.nn.Module, directory: Path, gen: torch.Generator
) -> tuple[str, dict]:
    """Logits at OTHER_SIZE for a ViT, with the position table resampled as the library does.

    timm: `create_model(..., img_size=48, pretrained=True)` resamples `pos_embed` while loading
    (checkpoint_filter_fn -> timm.layers.resample_abs_pos_embed: F.interpolate bicubic,
    antialias=True, align_corners=False, on the patch grid only; prefix tokens kept).
    Hugging Face: `model(pixel_values, interpolate_pos_encoding=True)` (ViTEmbeddings.
    interpolate_pos_encoding: F.interpolate bicubic, antialias=False, align_corners=False).
    """
    batch = images(gen, RESNET_BATCH, OTHER_SIZE)
    grid = OTHER_SIZE // 8

    def resized_logits(antialias: bool) -> tuple[np.ndarray, np.ndarray]:
        with interpolation_antialias(antialias):
            if spec.kind == "timm":
                resized = load(spec, directory, img_size=OTHER_SIZE)
                return logits_of(resized, batch), to_numpy(resized.pos_embed)
            table = model.vit.embeddings.interpolate_pos_encoding(
                torch.zeros(1, grid * grid + 1, 32), OTHER_SIZE, OTHER_SIZE
            )
            return logits_of(model, batch, interpolate_pos_encoding=True), to_numpy(table)

    antialias = spec.kind == "timm"
    logits, table = resized_logits(antialias)
    if spec.kind == "timm":
        prefix = model.num_prefix_tokens
        expected = resample_abs_pos_embed(model.pos_embed, [grid, grid], num_prefix_tokens=prefix)
        if not np.array_equal(table, to_numpy(expected)):
            raise RuntimeError(f"{spec.name}: timm resampled pos_embed another way")
    # the other antialias setting (another cubic kernel) must be told apart by the logits
    gap = np.abs(resized_logits(not antialias)[0] - logits).max()
    if gap < 1e-3:
        raise RuntimeError(f"{spec.name}: antialias moves the {OTHER_SIZE} logits by only {gap}")
    note = f"antialias={not antialias} would move the {OTHER_SIZE} logits by up to {gap:.4f}"
    return note, {
        f"images_{OTHER_SIZE}": batch,
        f"logits_{OTHER_SIZE}": logits,
        f"pos_embed_{OTHER_SIZE}": table,
    }


@contextlib.contextmanager
def interpolation_antialias(antialias: bool) -> Iterator[None]:
    """Every F.interpolate call inside runs with `antialias` (bicubic with antialias=True is
    PyTorch's PIL-like kernel, a=-0.5; without, a=-0.75), or as the caller asked when the
    caller's setting is the same."""
    original = torch.nn.functional.interpolate

    def forced(*args: object, **kwargs: object) -> torch.Tensor:
        kwargs["antialias"] = antialias
        return original(*args, **kwargs)

    torch.nn.functional.interpolate = forced
    try:
        yield
    finally:
        torch.nn.functional.interpolate = original


@torch.no_grad()
def check_statistics_matter(model: torch.nn.Module, batch: np.ndarray, logits: np.ndarray) -> None:
    """Reset running statistics (mean 0, var 1) move the logits far past the tolerance."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
    gap = np.abs(logits_of(fresh, batch) - logits).max()
    if gap < 1e-2:
        raise RuntimeError(f"running statistics move the logits by only {gap}")
    print(f"   without running statistics the logits would move by up to {gap:.3f}")


@torch.no_grad()
def check_gelu_matters(model: torch.nn.Module, batch: np.ndarray, logits: np.ndarray) -> None:
    """The tanh GELU in place of the exact one moves the logits past 3x the tolerance (the two
    forms differ by 5e-4 at most, and only 10 logits are compared)."""
    other = copy.deepcopy(model)
    for module in list(other.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.GELU) or type(child).__name__ == "GELUActivation":
                setattr(module, name, torch.nn.GELU(approximate="tanh"))
    gap = np.abs(logits_of(other, batch) - logits).max()
    if gap < 3e-4:
        raise RuntimeError(f"the GELU form moves the logits by only {gap}")
    print(f"   a tanh GELU would move the logits by up to {gap:.4f}")


@torch.no_grad()
def make(spec: Checkpoint) -> None:
    """Write one checkpoint directory and its reference.npz."""
    generator = make_deterministic(spec.seed)
    model = spec.build().eval()
    is_vit = not has_batch_norm(model)
    if is_vit:
        randomize_parameters(model, generator, VIT_WEIGHT_STD, matrices=True)
    else:
        randomize_parameters(model, generator, NORM_STD, matrices=False)
        set_running_statistics(model, generator)
    directory = fresh_directory(VISION / spec.name)
    save(spec, model, directory)

    batch = images(generator, VIT_BATCH if is_vit else RESNET_BATCH, SIZE)
    logits = logits_of(model, batch)
    reference = {"images": batch, "logits": logits}
    if spec.kind == "timm":
        reference.update(timm_features(model, batch))
    notes = []
    if is_vit and spec.name in ("timm_vit", "hf_vit"):
        note, arrays = other_size(spec, model, directory, generator)
        reference.update(arrays)
        notes.append(note)
    write_npz(directory / "reference.npz", reference)

    # The library's loader gives the recorded logits back (to rounding: a loaded convolution
    # may take another oneDNN path than the one built in memory)
    reloaded = np.abs(logits_of(load(spec, directory), batch) - logits).max()
    if reloaded > 1e-6:
        raise RuntimeError(f"{spec.name}: the saved checkpoint's logits are {reloaded} away")
    report(spec, directory, reference)
    for note in notes:
        print(f"   {note}")
    if is_vit:
        check_gelu_matters(model, batch, logits)
    else:
        check_statistics_matter(model, batch, logits)


def report(spec: Checkpoint, directory: Path, reference: dict) -> None:
    """Print what was written: files, tensors, arrays."""
    files = ", ".join(f"{p.name} {p.stat().st_size}" for p in sorted(directory.iterdir()))
    print(f"== {spec.name}: {files}")
    for key, shape in describe_tensors(directory).items():
        print(f"   tensor {key} {shape}")
    for key, array in reference.items():
        print(f"   array {key} {array.dtype} {list(array.shape)}")
    print(f"   logits std {reference['logits'].std():.3f}")


def main() -> None:
    for spec in checkpoints():
        make(spec)


if __name__ == "__main__":
    main()
