"""Published vision checkpoints: a timm directory (`config.json` with `architecture`, and
`model.safetensors`) or a Hugging Face one (`config.json` with `model_type` `resnet` or `vit`)
becomes a zoo `resnet` or `vit` through the family's declared conversion table
(zoo/models/<family>/convert.py).

`PUBLISHED` maps a layout and its family key (timm: the architecture's prefix; Hugging Face: the
`model_type`) to the zoo family and its converter; the config only ever picks a row of it.
Nothing a file says is imported or run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from zoo.errors import ZooError
from zoo.models.registry import create_model
from zoo.models.resnet import convert as resnet
from zoo.models.vit import convert as vit
from zoo.paths import flat_variables
from zoo.untrusted import parse_json, read_bounded
from zoo.weights import format as pretrained
from zoo.weights.published import CONVERSIONS

# published configs carry label tables (`id2label`: 1000 entries for ImageNet)
MAX_PUBLISHED_ITEMS = 100_000


@dataclass(frozen=True)
class Converter:
    """How one published layout becomes a zoo family."""

    family: str  # the zoo registry name
    settings: Callable[[dict[str, Any]], dict[str, Any]]  # config.json -> zoo settings
    rows: Callable[[dict[str, Any]], list]  # zoo settings -> the conversion table
    ignored: re.Pattern  # published tensors the zoo has no use for
    style: str  # "timm" | "hf": how a position table is resampled


def _timm(module: Any, family: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda config: module.timm_settings(config, config["architecture"])


# (layout, family key) -> Converter. Append a row per family.
PUBLISHED: dict[tuple[str, str], Converter] = {
    ("timm", "resnet"): Converter(
        "resnet", _timm(resnet, "resnet"), lambda s: resnet.TIMM, resnet.IGNORED, "timm"
    ),
    ("timm", "vit"): Converter("vit", _timm(vit, "vit"), vit.timm_rows, vit.IGNORED, "timm"),
    ("hf", "resnet"): Converter(
        "resnet", resnet.hf_settings, lambda s: resnet.HF, resnet.IGNORED, "hf"
    ),
    ("hf", "vit"): Converter("vit", vit.hf_settings, vit.hf_rows, vit.IGNORED, "hf"),
}


def published_config(directory: str | os.PathLike) -> dict[str, Any] | None:
    """config.json of a published (timm or Hugging Face) directory; None when the directory
    holds no config.json or the zoo's own kind of config."""
    path = Path(directory) / pretrained.CONFIG
    if not path.is_file():
        return None
    data = read_bounded(path, pretrained.MAX_CONFIG_BYTES, "published config")
    config = parse_json(data, path, "config", MAX_PUBLISHED_ITEMS, pretrained.MAX_JSON_DEPTH)
    if not isinstance(config, dict) or "format_version" in config:
        return None
    if "architecture" in config or "model_type" in config:
        return config
    return None


def converter_for(config: dict[str, Any], path: Path) -> Converter:
    """The PUBLISHED row a config picks; ZooError naming what is supported otherwise."""
    if "architecture" in config:
        arch = config["architecture"]
        key = (
            ("timm", str(arch).split("_")[0].rstrip("0123456789"))
            if isinstance(arch, str)
            else None
        )
    else:
        key = ("hf", config["model_type"])
    if key not in PUBLISHED:  # nor a decoder's (zoo.weights.published reads those first)
        hf = sorted({*CONVERSIONS, *(name for layout, name in PUBLISHED if layout == "hf")})
        timm = sorted(name for layout, name in PUBLISHED if layout == "timm")
        what = (
            f"architecture {config.get('architecture')!r}"
            if key is None or key[0] == "timm"
            else f"model_type {config.get('model_type')!r}"
        )
        raise ZooError(
            f"{path}: unknown {what} (the zoo reads model_type {', '.join(hf)}; timm "
            f"architectures {', '.join(f'{name}*' for name in timm)})"
        )
    return PUBLISHED[key]


@dataclass(frozen=True)
class Published:
    """A published directory read as a zoo model: family, settings, conversion."""

    directory: Path
    converter: Converter
    kwargs: dict[str, Any]  # the zoo settings config.json describes
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.converter.family

    def describe(self) -> str:
        layout = "timm" if self.converter.style == "timm" else "Hugging Face"
        return f"{self.directory / pretrained.WEIGHTS} ({layout} {self.name})"

    def mean_std(self) -> tuple[list[float], list[float]] | None:
        """The normalisation the checkpoint was trained with, if its config says."""
        cfg = self.config.get("pretrained_cfg") or {}
        mean, std = cfg.get("mean"), cfg.get("std")
        if mean is None:
            pre = _preprocessor(self.directory)
            mean, std = pre.get("image_mean"), pre.get("image_std")
        ok = all(
            isinstance(v, list) and v and all(isinstance(x, int | float) for x in v)
            for v in (mean, std)
        )
        return (list(mean), list(std)) if ok else None


def _preprocessor(directory: Path) -> dict[str, Any]:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return {}
    data = read_bounded(path, pretrained.MAX_CONFIG_BYTES, "preprocessor config")
    found = parse_json(data, path, "config", MAX_PUBLISHED_ITEMS, pretrained.MAX_JSON_DEPTH)
    return found if isinstance(found, dict) else {}


def read_published(directory: str | os.PathLike) -> Published | None:
    """The published checkpoint in `directory`, or None if it is not one."""
    directory = Path(directory)
    config = published_config(directory)
    if config is None:
        return None
    converter = converter_for(config, directory / pretrained.CONFIG)
    try:
        kwargs = converter.settings(config)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ZooError(f"{directory / pretrained.CONFIG}: unreadable config ({err})") from None
    return Published(directory, converter, kwargs, config)


def abstract(name: str, kwargs: dict[str, Any], where: Path) -> nnx.Module:
    try:
        return nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))
    except (TypeError, ValueError) as err:
        raise ZooError(f"{where}: cannot build model {name!r}: {err}") from None


class Conversion:
    """The published tensors of `published`, converted to the zoo paths of `model` (abstract or
    not): `layout` gives every zoo tensor whose sources the file has (by `jax.eval_shape`, no
    tensor read), plus each published tensor no row uses under its own dotted name (so the load
    report lists it as unexpected); `read` converts."""

    def __init__(self, published: Published, model: nnx.Module) -> None:
        self.published = published
        self.file = {
            k.replace("/", "."): v for k, v in pretrained.tensor_layout(published.directory).items()
        }
        self.plan: dict[str, tuple[list[str], Callable]] = {}
        rows = [(re.compile(p), f) for p, f in published.converter.rows(published.kwargs)]
        wanted = flat_variables(model)
        for path in wanted:
            for regex, make in rows:
                if m := regex.fullmatch(path):
                    sources, transform = make(m)
                    if all(s in self.file for s in sources):
                        self.plan[path] = (sources, transform)
                    break
        self.note = ""
        self._resample(wanted)
        used = {s for sources, _ in self.plan.values() for s in sources}
        ignored = published.converter.ignored
        self.leftover = sorted(k for k in self.file if k not in used and not ignored.fullmatch(k))
        self.layout = {
            path: jax.eval_shape(transform, [self.file[s] for s in sources])
            for path, (sources, transform) in self.plan.items()
        } | {k: self.file[k] for k in self.leftover}

    def _resample(self, wanted: dict[str, Any]) -> None:
        """A ViT whose position table is for another image size gets the file's table resampled
        (as its library does), and the report's source says so."""
        if "positions" not in self.plan or self.published.name != "vit":
            return
        sources, transform = self.plan["positions"]
        have = jax.eval_shape(transform, [self.file[s] for s in sources]).shape
        want = wanted["positions"].shape
        prefix = int(self.published.kwargs["pool"] == "cls")
        if have == want or have[1:] != want[1:]:
            return
        old, new = (round(float(np.sqrt(n - prefix))) for n in (have[0], want[0]))
        if old * old != have[0] - prefix or new * new != want[0] - prefix:
            return
        style = self.published.converter.style
        self.plan["positions"] = (
            sources,
            lambda t: vit.resample_positions(transform(t), old, new, prefix, style),
        )
        self.note = f", positions resampled {old}x{old} -> {new}x{new} patches"

    def describe(self) -> str:
        return self.published.describe()[:-1] + self.note + ")"

    def read(self, paths: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for path in paths:
            sources, transform = self.plan[path]
            arrays = pretrained.read_tensors(self.published.directory, sources)
            value = transform([arrays[s] for s in sources])
            out[path] = np.asarray(value).astype(arrays[sources[0]].dtype)
        return out
