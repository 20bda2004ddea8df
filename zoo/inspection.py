"""Looking inside saved weights: per-path statistics, and the difference between two sources.

Tensors are read straight from the files (safetensors, or an orbax checkpoint restored as numpy
arrays), a bounded batch at a time; no model is trained or allocated. Sources are those of
`zoo.weights.open_source`. A stacked tensor (under a module made by `create_stacked`, known from
the model its config names) gets one row per layer: `blocks/inner/kernel[0]`, `[1]`, ...
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from zoo.paths import check_all_match, check_pattern, first_match
from zoo.weights import WeightSource, open_source

BATCH_BYTES = 256 << 20  # tensors read at once: bounds memory on large models


@dataclass(frozen=True)
class WeightStats:
    """Statistics of one tensor (or one layer of a stacked one) over its finite values."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    mean: float
    std: float
    min: float
    max: float
    l2: float
    nonfinite: int


@dataclass(frozen=True)
class DiffRow:
    """`max_abs` = max |a - b|; `rel_l2` = ||a - b|| / ||b|| (0 when both are zero, inf when
    only b is)."""

    path: str
    shape: tuple[int, ...]
    max_abs: float
    rel_l2: float


@dataclass
class WeightDiff:
    """Rows for the paths in both sources; the paths in one only; those whose shapes differ."""

    rows: list[DiffRow] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)  # path -> the two shapes and dtypes


def inspect_weights(source: Any, paths: Sequence[str] | None = None) -> list[WeightStats]:
    """Statistics of every tensor of `source` (or those selected by the patterns `paths`),
    sorted by path; computed in float64 over the finite values, `nonfinite` counting the rest."""
    source = open_source(source)
    layout = source.layout
    selected = _select(paths, sorted(layout))
    rows = []
    for path, array in _read_in_batches(source, selected):
        if _stacked(path, source.stacked) and array.ndim >= 1:
            rows += [_stats(f"{path}[{i}]", layer) for i, layer in enumerate(array)]
        else:
            rows.append(_stats(path, array))
    return rows


def diff_weights(a: Any, b: Any, paths: Sequence[str] | None = None) -> WeightDiff:
    """How `a` differs from `b`, path by path (layer by layer for stacked tensors, where a
    different number of layers leaves the extra layers in one source only)."""
    a, b = open_source(a), open_source(b)
    layout_a, layout_b = a.layout, b.layout
    selected = _select(paths, sorted(layout_a.keys() | layout_b.keys()))
    diff = WeightDiff(
        only_in_a=[p for p in selected if p not in layout_b],
        only_in_b=[p for p in selected if p not in layout_a],
    )
    stacked = a.stacked | b.stacked
    common = []
    for path in (p for p in selected if p in layout_a and p in layout_b):
        shape_a, shape_b = layout_a[path].shape, layout_b[path].shape
        by_layer = _stacked(path, stacked) and len(shape_a) == len(shape_b) >= 1
        if shape_a == shape_b or (by_layer and shape_a[1:] == shape_b[1:]):
            common.append(path)
        else:
            diff.mismatched[path] = f"{_describe(layout_a[path])} vs {_describe(layout_b[path])}"
    both = zip(_read_in_batches(a, common), _read_in_batches(b, common), strict=True)
    for (path, array_a), (_, array_b) in both:
        if not _stacked(path, stacked) or array_a.ndim == 0:
            diff.rows.append(_diff_row(path, array_a, array_b))
            continue
        layers = min(len(array_a), len(array_b))
        diff.rows += [_diff_row(f"{path}[{i}]", array_a[i], array_b[i]) for i in range(layers)]
        extra = [f"{path}[{i}]" for i in range(layers, max(len(array_a), len(array_b)))]
        (diff.only_in_a if len(array_a) > layers else diff.only_in_b).extend(extra)
    return diff


def _select(patterns: Sequence[str] | None, paths: list[str]) -> list[str]:
    if not patterns:
        return paths
    patterns = [check_pattern(p) for p in ([patterns] if isinstance(patterns, str) else patterns)]
    check_all_match(patterns, paths, what="paths pattern")
    return [p for p in paths if first_match(patterns, p) is not None]


def _stacked(path: str, stacked: frozenset[str]) -> bool:
    return any(path.startswith(prefix + "/") for prefix in stacked)


def _describe(info: jax.ShapeDtypeStruct) -> str:
    return f"{np.dtype(info.dtype)}{list(info.shape)}"


def _read_in_batches(source: WeightSource, paths: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(path, array) for `paths` in order, reading at most about BATCH_BYTES at once."""
    batch, size = [], 0
    for path in paths:
        info = source.layout[path]
        batch.append(path)
        size += math.prod(info.shape) * np.dtype(info.dtype).itemsize
        if size >= BATCH_BYTES or path == paths[-1]:
            arrays = source.read(batch)
            yield from ((p, np.asarray(arrays[p])) for p in batch)
            batch, size = [], 0


def _stats(path: str, array: np.ndarray) -> WeightStats:
    values = array.astype(np.float64).ravel()
    finite = values[np.isfinite(values)]
    nan = float("nan")
    return WeightStats(
        path=path,
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        count=int(array.size),
        mean=float(finite.mean()) if finite.size else nan,
        std=float(finite.std()) if finite.size else nan,
        min=float(finite.min()) if finite.size else nan,
        max=float(finite.max()) if finite.size else nan,
        l2=float(np.sqrt(np.sum(finite * finite))),
        nonfinite=int(values.size - finite.size),
    )


def _diff_row(path: str, a: np.ndarray, b: np.ndarray) -> DiffRow:
    a, b = a.astype(np.float64), b.astype(np.float64)
    delta = np.abs(a - b)
    norm_delta, norm_b = float(np.sqrt(np.sum(delta * delta))), float(np.sqrt(np.sum(b * b)))
    rel = norm_delta / norm_b if norm_b else 0.0 if norm_delta == 0 else math.inf
    return DiffRow(path, tuple(a.shape), float(delta.max()) if delta.size else 0.0, rel)


# --- text tables -------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An aligned text table: the first `left` columns flush left, the others flush right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, rows)])


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6g}"


def format_inspection(rows: Sequence[WeightStats]) -> str:
    """`inspect_weights` rows as a table."""
    header = ("path", "shape", "dtype", "count", "mean", "std", "min", "max", "l2", "nonfinite")
    body = [
        (
            r.path,
            str(r.shape),
            r.dtype,
            f"{r.count:,}",
            *map(_number, (r.mean, r.std, r.min, r.max, r.l2)),
            str(r.nonfinite),
        )
        for r in rows
    ]
    return format_table(header, body, left=3)


def format_diff(diff: WeightDiff, a: str = "a", b: str = "b") -> str:
    """`diff_weights` as a table, then the paths in one source only and those that differ."""
    body = [(r.path, str(r.shape), _number(r.max_abs), _number(r.rel_l2)) for r in diff.rows]
    lines = [format_table(("path", "shape", "max_abs_diff", "rel_l2_diff"), body, left=2)]
    lines += [f"only in {a}: {p}" for p in diff.only_in_a]
    lines += [f"only in {b}: {p}" for p in diff.only_in_b]
    lines += [f"shapes differ: {p}: {why}" for p, why in diff.mismatched.items()]
    return "\n".join(lines)
