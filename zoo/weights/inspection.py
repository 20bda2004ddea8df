"""Looking inside saved weights: per-path statistics, and the difference between two sources.

Tensors are read straight from the files (safetensors, or an orbax checkpoint restored as numpy
arrays), a bounded batch at a time; no model is trained or allocated. Sources are those of
`zoo.weights.sources.open_source`. A stacked tensor (a variable of a module made by
`create_stacked`, known from the model its config names) gets one row per layer:
`blocks/inner/kernel[0]`, `[1]`, ... A file cannot make that more rows than the model's own
stacked variables, each of at most MAX_LAYERS layers (the bound of every model's depth),
whatever its header declares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.models.common_settings import MAX_LAYERS
from zoo.paths import check_all_match, check_pattern, first_match
from zoo.reporting.tables import format_table, table_line
from zoo.weights.sources import WeightSource, describe_tensor, open_source

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
    only b is). Values equal in both (NaN in both included) differ by 0; a NaN in one of them
    makes both NaN."""

    path: str
    shape: tuple[int, ...]
    max_abs: float
    rel_l2: float


@dataclass
class WeightDiff:
    """Rows for the paths in both sources; the paths in one only; those whose shapes differ
    (not compared); those compared whose dtypes differ."""

    rows: list[DiffRow] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)  # path -> the two shapes and dtypes
    dtypes: dict[str, str] = field(default_factory=dict)  # path -> the two dtypes

    @property
    def equal(self) -> bool:
        """Whether the two sources hold the same tensors, of the same dtypes and values."""
        differing = [r for r in self.rows if r.max_abs != 0]  # NaN != 0: a NaN differs
        return not (differing or self.only_in_a or self.only_in_b or self.mismatched or self.dtypes)


def inspect_weights(source: Any, paths: Sequence[str] | None = None) -> list[WeightStats]:
    """Statistics of every tensor of `source`, computed in float64 over the finite values
    (`nonfinite` counts the rest); a stacked tensor gets one row per layer.

    Args:
        source: a run, a checkpoint step or pretrained directory, a model or an `nnx.State`.
        paths: path patterns selecting the tensors; None: all.

    Returns:
        One WeightStats per tensor (or layer), sorted by path.

    Raises:
        ZooError: an unreadable source, a pattern that matches nothing, or a stacked tensor of
            more than MAX_LAYERS layers.
    """
    source = open_source(source)
    return list(_inspection_rows(source, _planned_rows(source, paths)))


def _inspection_rows(source: WeightSource, planned: list[str]) -> Iterator[WeightStats]:
    """The rows of the `planned` paths one at a time, as the tensors are read."""
    for path, array in _read_in_batches(source, planned):
        if _by_layer(path, array.shape, source.stacked, source):
            yield from (_stats(f"{path}[{i}]", layer) for i, layer in enumerate(array))
        else:
            yield _stats(path, array)


def _planned_rows(source: WeightSource, paths: Sequence[str] | None) -> list[str]:
    """The selected paths, each checked for the rows it will give before any tensor is read."""
    selected = _select(paths, sorted(source.layout))
    for path in selected:
        _by_layer(path, source.layout[path].shape, source.stacked, source)
    return selected


def _by_layer(
    path: str, shape: tuple[int, ...], stacked: frozenset[str], source: WeightSource
) -> bool:
    """Whether the tensor at `path` of `source` gets a row per layer (it is one of the `stacked`
    tensors and has layers); a ZooError if that is more rows than any model has layers."""
    if path not in stacked or not shape or shape[0] == 0:
        return False
    if shape[0] > MAX_LAYERS:
        raise ZooError(
            f"{source}: {path} of shape {list(shape)} has {shape[0]} layers on its stacked axis; "
            f"a model has at most {MAX_LAYERS}"
        )
    return True


def diff_weights(a: Any, b: Any, paths: Sequence[str] | None = None) -> WeightDiff:
    """How `a` differs from `b`, path by path (layer by layer for stacked tensors, where a
    different number of layers leaves the extra layers in one source only).

    Args:
        a: a source as `inspect_weights` takes them.
        b: the source `a` is compared with.
        paths: path patterns selecting the tensors; None: all.

    Returns:
        The WeightDiff (`equal` says whether they hold the same tensors).

    Raises:
        ZooError: an unreadable source, a pattern that matches nothing, or a stacked tensor of
            more than MAX_LAYERS layers.
    """
    a, b = open_source(a), open_source(b)
    layout_a, layout_b = a.layout, b.layout
    selected = _select(paths, sorted(layout_a.keys() | layout_b.keys()))
    diff = WeightDiff(
        only_in_a=[p for p in selected if p not in layout_b],
        only_in_b=[p for p in selected if p not in layout_a],
    )
    stacked, common, by_layer = a.stacked | b.stacked, [], set()
    for path in (p for p in selected if p in layout_a and p in layout_b):
        info_a, info_b = layout_a[path], layout_b[path]
        shape_a, shape_b = info_a.shape, info_b.shape
        layered = _by_layer(path, shape_a, stacked, a) & _by_layer(path, shape_b, stacked, b)
        if shape_a == shape_b or (layered and shape_a[1:] == shape_b[1:]):
            common.append(path)
            by_layer |= {path} if layered else set()
            if np.dtype(info_a.dtype) != np.dtype(info_b.dtype):
                diff.dtypes[path] = f"{np.dtype(info_a.dtype)} vs {np.dtype(info_b.dtype)}"
        else:
            diff.mismatched[path] = f"{describe_tensor(info_a)} vs {describe_tensor(info_b)}"
    both = zip(_read_in_batches(a, common), _read_in_batches(b, common), strict=True)
    for (path, array_a), (_, array_b) in both:
        if path not in by_layer:
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
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # inf - inf and nan - nan would give NaN
    with np.errstate(invalid="ignore"):
        delta = np.where(same, 0.0, np.abs(a - b))
    finite_b = np.where(
        np.isfinite(b), b, 0.0
    )  # ||b|| over what can be summed; delta says the rest
    norm_delta, norm_b = math.sqrt(np.sum(delta * delta)), math.sqrt(np.sum(finite_b * finite_b))
    if math.isnan(norm_delta) or norm_b:
        rel = norm_delta / norm_b if norm_b else math.nan
    else:
        rel = 0.0 if norm_delta == 0 else math.inf
    return DiffRow(path, tuple(a.shape), float(delta.max()) if delta.size else 0.0, rel)


# --- text tables -------------------------------------------------------------------------------


_INSPECTION_HEADER = (
    "path", "shape", "dtype", "count", "mean", "std", "min", "max", "l2", "nonfinite"
)  # fmt: skip
_NUMBER_WIDTH = len("-1.23457e-05")  # `.6g` of most values; a wider one pushes its row out


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6g}"  # NaN: no finite value to show


def _inspection_cells(r: WeightStats) -> tuple[str, ...]:
    numbers = map(_number, (r.mean, r.std, r.min, r.max, r.l2))
    return (r.path, str(r.shape), r.dtype, f"{r.count:,}", *numbers, str(r.nonfinite))


def _inspection_widths(rows: Iterable[tuple[str, tuple[int, ...], str]]) -> list[int]:
    """Column widths from each row's path, shape and dtype: known before any tensor is read."""
    widths = [len(h) for h in _INSPECTION_HEADER]
    for path, shape, dtype in rows:
        count = math.prod(shape)
        for column, text in enumerate((path, str(shape), dtype, f"{count:,}")):
            widths[column] = max(widths[column], len(text))
        widths[-1] = max(widths[-1], len(str(count)))
    return [max(w, _NUMBER_WIDTH) if 4 <= i < 9 else w for i, w in enumerate(widths)]


def format_inspection(rows: Sequence[WeightStats]) -> str:
    """`inspect_weights` rows as a table."""
    widths = _inspection_widths((r.path, r.shape, r.dtype) for r in rows)
    return "\n".join(_inspection_table(rows, widths))


def inspection_lines(source: Any, paths: Sequence[str] | None = None) -> Iterator[str]:
    """The `format_inspection` table of `source` (or of the paths `paths` select), line by line
    as the tensors are read: the column widths come from the layout, so a large model's table
    starts at once and is never held whole. Everything is checked before the first line."""
    source = open_source(source)
    planned = _planned_rows(source, paths)
    widths = _inspection_widths(_row_layouts(source, planned))
    yield from _inspection_table(_inspection_rows(source, planned), widths)


def _row_layouts(source: WeightSource, planned: list[str]) -> Iterator[tuple]:
    """(path, shape, dtype) of the widest row of each planned path: its last layer's, if any."""
    for path in planned:
        info = source.layout[path]
        shape, dtype = tuple(info.shape), str(np.dtype(info.dtype))
        if _by_layer(path, shape, source.stacked, source):
            yield f"{path}[{shape[0] - 1}]", shape[1:], dtype
        else:
            yield path, shape, dtype


def _inspection_table(rows: Iterable[WeightStats], widths: list[int]) -> Iterator[str]:
    header = table_line(_INSPECTION_HEADER, widths, left=3)
    yield header
    yield "-" * len(header)
    yield from (table_line(_inspection_cells(r), widths, left=3) for r in rows)


def format_diff(diff: WeightDiff, a: str = "a", b: str = "b") -> str:
    """`diff_weights` as a table, then the paths in one source only and those that differ, and
    last a line saying whether `a` and `b` differ. A NaN difference shows as nan."""
    body = [(r.path, str(r.shape), f"{r.max_abs:.6g}", f"{r.rel_l2:.6g}") for r in diff.rows]
    lines = [format_table(("path", "shape", "max_abs_diff", "rel_l2_diff"), body, left=2)]
    lines += [f"only in {a}: {p}" for p in diff.only_in_a]
    lines += [f"only in {b}: {p}" for p in diff.only_in_b]
    lines += [f"shapes differ: {p}: {why}" for p, why in diff.mismatched.items()]
    lines += [f"dtypes differ: {p}: {why}" for p, why in diff.dtypes.items()]
    return "\n".join([*lines, diff_summary(diff, a, b)])


def diff_summary(diff: WeightDiff, a: str = "a", b: str = "b") -> str:
    """One line: `a and b are equal (4 tensors)`, or how many of what differ."""
    compared = len(diff.rows)
    if diff.equal:
        return f"{a} and {b} are equal ({compared} {_plural(compared, 'tensor')} compared)"
    in_value = sum(r.max_abs != 0 for r in diff.rows)
    counts = [
        (in_value, f"of {compared} compared in value"),
        (len(diff.dtypes), "in dtype"),
        (len(diff.mismatched), "in shape"),
        (len(diff.only_in_a), f"only in {a}"),
        (len(diff.only_in_b), f"only in {b}"),
    ]
    return f"{a} and {b} differ: " + ", ".join(f"{n} {what}" for n, what in counts if n)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"
