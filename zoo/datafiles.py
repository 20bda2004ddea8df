"""Reading a user's own data files (.npz, .csv) into checked NumPy arrays.

Every problem with a file is a ZooError that names the file and what is wrong with it. Nothing in
a file decides what code runs: .npz files are read with `allow_pickle=False`.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path

import numpy as np

from zoo.errors import ZooError

Arrays = dict[str, np.ndarray]  # "x", "y" and optionally "x_val", "y_val"


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ZooError(f"{path}: no such file")
    if not path.is_file():
        raise ZooError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ZooError(f"{path}: the file is empty")
    return path


def read_npz(path: str | Path) -> Arrays:
    """Arrays `x`, `y` and optional `x_val`, `y_val` from an .npz file, checked."""
    path = _existing_file(path)
    if not zipfile.is_zipfile(path):
        raise ZooError(f"{path}: not an .npz file (write one with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing = [k for k in ("x", "y") if k not in names]
            if missing:
                found = ", ".join(sorted(names)) or "none"
                raise ZooError(
                    f"{path}: missing array {' and '.join(map(repr, missing))} "
                    f"(an .npz needs x and y, optionally x_val and y_val; found: {found})"
                )
            arrays = {k: npz[k] for k in ("x", "y", "x_val", "y_val") if k in names}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ZooError(f"{path}: not a readable .npz file ({err})") from None
    except ValueError:  # object arrays need pickle, which is never allowed
        raise ZooError(f"{path}: holds an object array, which would need pickle to load") from None
    check_arrays(path, arrays)
    return arrays


def read_csv(path: str | Path, target: str) -> Arrays:
    """`x` (every column but `target`) and `y` (the `target` column) from a CSV with a header."""
    path = _existing_file(path)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ZooError(f"{path}: not a readable CSV file ({err})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ZooError(f"{path}: the file is empty")
    header = [name.strip() for name in rows[0]]
    if target not in header:
        raise ZooError(f"{path}: no column {target!r} (columns: {', '.join(header)})")
    if len(header) < 2:
        raise ZooError(f"{path}: only the target column {target!r}; no feature columns")
    if len(rows) < 2:
        raise ZooError(f"{path}: a header but no data rows")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        line = i + 2  # 1-based, after the header
        if len(row) != len(header):
            raise ZooError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ZooError(
                    f"{path}: line {line}, column {header[j]!r}: {cell.strip()!r} is not a number"
                ) from None
            if not math.isfinite(values[i, j]):
                raise ZooError(
                    f"{path}: line {line}, column {header[j]!r}: {cell.strip()!r} is not finite"
                )
    col = header.index(target)
    y = values[:, col]
    if all(cell.strip().lstrip("+-").isdigit() for cell in (row[col] for row in rows[1:])):
        y = y.astype(np.int64)  # written as integers: class labels unless data.task says otherwise
    arrays = {"x": np.delete(values, col, axis=1), "y": y}
    check_arrays(path, arrays)
    return arrays


def check_arrays(path: str | Path, arrays: Arrays) -> None:
    """Raise a ZooError naming `path` for arrays that cannot be a dataset."""
    if ("x_val" in arrays) != ("y_val" in arrays):
        have, lack = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise ZooError(f"{path}: has {have} but no {lack}; give both or neither")
    for name, arr in arrays.items():
        if arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise ZooError(f"{path}: {name} holds {arr.dtype} values; it must be numeric")
        if name.startswith("x") and arr.ndim != 2:
            raise ZooError(
                f"{path}: {name} has shape {arr.shape}; it must be 2-D (rows, features)"
                + (" (reshape one feature to (rows, 1))" if arr.ndim == 1 else "")
            )
        if name.startswith("y") and arr.ndim not in (1, 2):
            raise ZooError(
                f"{path}: {name} has shape {arr.shape}; it must be 1-D (rows,) or 2-D (rows, k)"
            )
        if arr.shape[0] == 0:
            raise ZooError(f"{path}: {name} has no rows")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ZooError(
                f"{path}: {name} holds NaN or infinite values (first at index {tuple(bad)})"
            )
    for x_name, y_name in (("x", "y"), ("x_val", "y_val")):
        if x_name in arrays and len(arrays[x_name]) != len(arrays[y_name]):
            raise ZooError(
                f"{path}: {x_name} has {len(arrays[x_name])} rows but {y_name} has "
                f"{len(arrays[y_name])}"
            )
    if "x_val" in arrays:
        for name in ("x", "y"):
            train, val = arrays[name], arrays[f"{name}_val"]
            if train.shape[1:] != val.shape[1:] or (name == "y" and train.ndim != val.ndim):
                raise ZooError(
                    f"{path}: {name} has shape {train.shape} but {name}_val {val.shape}; "
                    "they must agree past the first (row) dimension"
                )


def is_integer_labels(y: np.ndarray) -> bool:
    """True for integer class labels: an integer 1-D array."""
    return np.issubdtype(y.dtype, np.integer) and y.ndim == 1
