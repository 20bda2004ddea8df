"""How a family declares the conversion of a published checkpoint (no JAX): data, applied by one
reader (zoo.weights.published) in both directions.

A `Row` maps one published tensor name to one zoo state path with a transform from the few that
exist. A `{layer}` in the name marks a per-layer tensor: layers 0..L-1 are stacked into the scan
axis of the zoo path (and split again when writing back). Tied output embeddings need no row:
the tied model has no head, and the published layout has no `lm_head.weight`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.config.types import SettingError

# The transforms a row may name (zoo.weights.published implements them, both ways).
TRANSFORMS = ("none", "transpose")


@dataclass(frozen=True)
class Row:
    """`source` (published name, `{layer}` for per-layer tensors) <-> `target` (zoo state path)."""

    source: str
    target: str
    transform: str = "none"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r} (known: {TRANSFORMS})")


@dataclass(frozen=True)
class Conversion:
    """A published family: its zoo model, its tensor rows, and its config.json both ways.

    `settings` maps a published config (a dict read from config.json) to the zoo model's
    settings (SettingError/ZooError naming what it cannot take); `config` maps the settings back
    to a config.json the reference library loads. `ignored` names (regexes, searched) of tensors
    that carry nothing the model uses (e.g. cached causal masks of old GPT-2 files); `aliases`
    rewrite old names to current ones ((regex, replacement), applied in order)."""

    model: str
    rows: tuple[Row, ...]
    settings: Callable[[dict[str, Any]], dict[str, Any]]
    config: Callable[[dict[str, Any]], dict[str, Any]]
    ignored: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def require(config: dict[str, Any], key: str, kind: type | tuple[type, ...] = int) -> Any:
    """`config[key]`, which must be there and of `kind` (bool is not an int here)."""
    value = config.get(key)
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        value = None
    if not isinstance(value, kind):
        raise SettingError(f"config.json: {key}={value!r}; expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
