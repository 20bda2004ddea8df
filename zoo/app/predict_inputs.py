"""zoo-predict's inputs: a file's rows as the served model takes them, a chunk at a time, with
their labels where the file has them (then the predictions are scored).

Readers are chosen by the model's input kind (`Served.kind`) and the file's extension:
`READERS[(kind, suffix)]`. Feature rows and token sequences come from a .csv or .npz here; a data
family adds its own kinds (text prompts, image folders) by adding entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.app.predict_source import FEATURES, TOKENS, Served
from zoo.data.streams import Chunk, CsvRows, NpzRows
from zoo.errors import ZooError


@dataclass
class Rows:
    """A file's rows: `batches(n)` yields (inputs as the model takes them, labels or None)."""

    path: Path
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray | None]]]
    width: int  # features per row, or tokens per sequence
    labelled: str | None  # the label column or array, if the file has one
    total: int  # for the progress bar: rows, or bytes
    unit: str  # "rows" or "B"
    position: Callable[[], int]  # done so far, in `unit`
    close: Callable[[], None]


def open_rows(served: Served, path: str | Path, target: str | None) -> Rows:
    """The rows of `path` for `served`'s model; `target` names the label column or array
    (None: the run's label column if the file has it, or an .npz's `y`)."""
    path = Path(path)
    reader = READERS.get((served.kind, path.suffix.lower()))
    if reader is None:
        valid = sorted(suffix for kind, suffix in READERS if kind == served.kind)
        raise ZooError(
            f"input={path}: a {served.kind} model reads {', '.join(valid)} files, "
            f"not {path.suffix or 'a file without extension'!r}"
        )
    return reader(served, path, target)


def _csv_rows(served: Served, path: Path, target: str | None) -> Rows:
    rows = CsvRows(path)
    try:
        features, label = _csv_columns(served, rows.header, path, target)
    except ZooError:
        rows.close()
        raise
    index = [rows.header.index(c) for c in features]
    label_index = rows.header.index(label) if label is not None else None
    hint = ""
    if label is None and served.kind == FEATURES and len(features) == (served.width or 0) + 1:
        hint = " (is one of them a label? name the label column with target=<column>)"
    try:
        width = _check_width(served, len(features), path, f"{len(features)} feature columns", hint)
    except ZooError:
        rows.close()
        raise

    def batches(n: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for chunk in rows.chunks(n):
            x = _inputs(served, chunk, chunk.values[:, index], path)
            y = None
            if label_index is not None:
                y = _labels(served, chunk, chunk.values[:, label_index], path)
            yield x, y

    return Rows(path, batches, width, label, rows.size, "B", rows.position, rows.close)


def _csv_columns(
    served: Served, header: list[str], path: Path, target: str | None
) -> tuple[list[str], str | None]:
    """The feature columns (in the model's order) and the label column of a CSV's header."""
    if target is not None and target not in header:
        raise ZooError(f"{path}: no column target={target!r} (columns: {', '.join(header)})")
    if target is not None and served.kind == TOKENS:
        raise ZooError(
            f"target={target}: a token model's labels are one per position; give them as the "
            "array y (rows, length) of an .npz"
        )
    label = target if target is not None else (served.target if served.target in header else None)
    if served.columns is None:
        return [c for c in header if c != label], label
    missing = [c for c in served.columns if c not in header]
    if missing:
        raise ZooError(
            f"{path}: lacks the model's feature columns {', '.join(map(repr, missing))} "
            f"(it was trained on {len(served.columns)}: {', '.join(served.columns)})"
        )
    extra = [c for c in header if c not in served.columns and c != label]
    if extra:
        raise ZooError(
            f"{path}: column(s) {', '.join(map(repr, extra))} are not among the model's features "
            f"({', '.join(served.columns)}); drop them"
        )
    return served.columns, label


def _npz_rows(served: Served, path: Path, target: str | None) -> Rows:
    npz = NpzRows(path)
    try:
        x = npz.member("x")
        label = target if target is not None else ("y" if "y" in npz.names else None)
        y = npz.member(label) if label is not None else None
        if len(x.shape) != 2:
            raise ZooError(f"{path}: x has shape {x.shape}; it must be 2-D (rows, features)")
        if y is not None and y.shape[0] != x.shape[0]:
            raise ZooError(f"{path}: x has {x.shape[0]} rows but {label} has {y.shape[0]}")
        width = _check_width(served, x.shape[1], path, f"x of shape {x.shape}")
    except ZooError:
        npz.close()
        raise
    done = [0]

    def batches(n: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        labels = npz.chunks(label, n) if label is not None else None
        for chunk in npz.chunks("x", n):
            inputs = _inputs(served, chunk, chunk.values, path)
            y = _labels(served, chunk, next(labels).values, path) if labels is not None else None
            done[0] += len(chunk.values)
            yield inputs, y

    return Rows(path, batches, width, label, x.shape[0], "rows", lambda: done[0], npz.close)


def _check_width(served: Served, width: int, path: Path, what: str, hint: str = "") -> int:
    if served.kind == FEATURES and width != served.width:
        raise ZooError(f"{path}: {what}, but the model takes {served.width} features{hint}")
    if served.kind == TOKENS and not 1 <= width <= served.max_len:
        raise ZooError(
            f"{path}: {what}: sequences of {width} tokens, but the model takes 1 to "
            f"{served.max_len} (max_len)"
        )
    return width


def _inputs(served: Served, chunk: Chunk, values: np.ndarray, path: Path) -> np.ndarray:
    """Checked values as the model takes them."""
    if served.kind == TOKENS:
        bad = ~np.isin(values, np.arange(served.vocab_size)) if values.size else values
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ZooError(
                f"{chunk.where(path, i)}: token {values[i, j]:g} at position {j} is not an "
                f"integer in 0..{served.vocab_size - 1} (the model's vocab_size)"
            )
        return served.preprocess(values)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ZooError(
                f"{chunk.where(path, i)}: feature {j} is {values[i, j]:.6g}, not a finite "
                "float32 number"
            )
    return served.preprocess(values)


def _labels(served: Served, chunk: Chunk, values: np.ndarray, path: Path) -> np.ndarray:
    """Checked labels: class ids of the model's classes, or finite targets."""
    if served.num_classes is not None:
        bad = ~np.isin(values, np.arange(served.num_classes))
        if bad.any():
            where = np.argwhere(bad)[0]
            raise ZooError(
                f"{chunk.where(path, int(where[0]))}: label {values[tuple(where)]:g} is not a "
                f"class of the model's 0..{served.num_classes - 1}"
            )
        return values.astype(np.int64)
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        i = int(np.argwhere(~np.isfinite(values))[0][0])
        raise ZooError(f"{chunk.where(path, i)}: the label is not finite")
    return values


READERS: dict[tuple[str, str], Callable[[Served, Path, str | None], Rows]] = {
    (FEATURES, ".csv"): _csv_rows,
    (FEATURES, ".npz"): _npz_rows,
    (TOKENS, ".csv"): _csv_rows,
    (TOKENS, ".npz"): _npz_rows,
}
