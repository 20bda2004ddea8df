"""data=npz, data=csv: a user's own data files, read into checked NumPy arrays.

Every problem with a file is a ZooError that names the file and what is wrong with it. Nothing in
a file decides what code runs: .npz files are read with `allow_pickle=False`.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.arrays import from_arrays
from zoo.data.dataset import Dataset
from zoo.errors import ZooError
from zoo.memory import require_memory

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
    """Arrays `x`, `y` and optional `x_val`, `y_val` from an .npz file, checked: each member's
    header (dtype, shape) is read and checked before its data is loaded."""
    path = _existing_file(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            damaged = file.read(4) == b"PK\x03\x04"  # a zip's start without its end
        raise ZooError(
            f"{path}: a damaged or cut short .npz file (its zip directory is missing)"
            if damaged
            else f"{path}: not an .npz file (write one with numpy.savez)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = _npz_members(path, archive)
            for name, info in members.items():
                _check_npy_header(path, name, archive, info)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in members}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as err:
        raise ZooError(f"{path}: a damaged .npz file ({_gist(err)})") from None
    check_arrays(path, arrays)
    return arrays


def _gist(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:160] + "..."


def _npz_members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members for x, y, x_val, y_val by name: each must be a `<name>.npy`."""
    infos = {info.filename: info for info in archive.infolist()}
    members, missing = {}, []
    for name in ("x", "y", "x_val", "y_val"):
        if f"{name}.npy" in infos:
            members[name] = infos[f"{name}.npy"]
            continue
        other = [m for m in infos if m == name or m.startswith(f"{name}.")]
        if other:
            raise ZooError(
                f"{path}: member {other[0]!r} is not a .npy array (write the file with numpy.savez)"
            )
        if name in ("x", "y"):
            missing.append(name)
    if missing:
        found = ", ".join(sorted(m.removesuffix(".npy") for m in infos)) or "none"
        raise ZooError(
            f"{path}: missing array {' and '.join(map(repr, missing))} "
            f"(an .npz needs x and y, optionally x_val and y_val; found: {found})"
        )
    return members


def _check_npy_header(
    path: Path, name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> None:
    """Refuse an object array (it would need pickle), a member shorter than its header says, and
    an array that cannot fit in memory, from the header alone."""
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(file)
        data_start = file.tell()
    if dtype.hasobject:
        raise ZooError(f"{path}: {name} holds an object array, which would need pickle to load")
    nbytes = math.prod(shape) * dtype.itemsize
    held = info.file_size - data_start
    if held < nbytes:
        raise ZooError(
            f"{path}: {name} is cut short: its header says {dtype} {tuple(shape)} "
            f"({nbytes:,} bytes) but it holds {max(held, 0):,} bytes"
        )
    require_memory(nbytes, f"{path}: {name} ({dtype} {tuple(shape)})")


# A number as a CSV writes it: ASCII digits, an optional sign, point and exponent. Python's
# float() takes more (`1_000`, Arabic-Indic or full-width digits, Unicode spaces), which no other
# reader of the file would take for the same number.
CSV_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
CSV_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)
CSV_SPACE = " \t"  # around a cell: a space after the comma is common; other spaces are not


def read_csv(path: str | Path, target: str) -> Arrays:
    """`x` (every column but `target`) and `y` (the `target` column) from a CSV with a header.

    Every cell must be a plain number (see CSV_NUMBER) and every column name distinct; errors
    name the line in the file and the column."""
    path = _existing_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: Excel's BOM
            reader = csv.reader(file)
            rows = [(reader.line_num, row) for row in reader]  # the line each row ends on
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ZooError(f"{path}: not a readable CSV file ({err})") from None
    rows = [(line, row) for line, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ZooError(f"{path}: the file is empty")
    header = [name.strip() for name in rows[0][1]]
    _check_column_names(path, header)
    if target not in header:
        raise ZooError(f"{path}: no column {target!r} (columns: {', '.join(header)})")
    if len(header) < 2:
        raise ZooError(f"{path}: only the target column {target!r}; no feature columns")
    if len(rows) < 2:
        raise ZooError(f"{path}: a header but no data rows")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ZooError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
        for j, cell in enumerate(row):
            values[i, j] = _csv_number(cell, f"{path}: line {line}, column {header[j]!r}")
    col = header.index(target)
    y = values[:, col]
    cells = [row[col].strip(CSV_SPACE) for _, row in rows[1:]]
    if all(cell.lstrip("+-").isdigit() for cell in cells):  # ASCII digits only, as checked
        # written as integers: maybe class labels (data.task=auto decides), read exactly
        with contextlib.suppress(OverflowError):  # beyond int64: only a regression target
            y = np.array([int(cell) for cell in cells], dtype=np.int64)
    arrays = {"x": np.delete(values, col, axis=1), "y": y}
    check_arrays(path, arrays)
    return arrays


def _check_column_names(path: Path, header: list[str]) -> None:
    """Each column name once: with two of a name, which is the target or a feature is a guess."""
    first: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in first:
            raise ZooError(
                f"{path}: column {name!r} appears twice in the header (columns {first[name] + 1} "
                f"and {j + 1}); give each column its own name"
            )
        first[name] = j


def _csv_number(cell: str, where: str) -> float:
    """The cell's finite value; a ZooError starting with `where` for anything else."""
    text = cell.strip(CSV_SPACE)
    if CSV_NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    elif not CSV_NOT_FINITE.fullmatch(text):
        try:
            float(text)
        except ValueError:
            raise ZooError(f"{where}: {text!r} is not a number") from None
        raise ZooError(
            f"{where}: {text!r} is not a plain number (ASCII digits, sign, point, exponent; "
            "no '_' separators, other digits or spaces)"
        )
    raise ZooError(f"{where}: {text!r} is not finite")


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
        if np.issubdtype(arr.dtype, np.floating):
            _check_float32_range(path, name, arr)
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


def _check_float32_range(path: str | Path, name: str, arr: np.ndarray) -> None:
    """NaN, infinity, and finite values beyond float32 (the models compute in float32)."""
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ZooError(f"{path}: {name} holds NaN or infinite values (first at index {where})")
    limit = np.finfo(np.float32).max
    if arr.dtype.itemsize > 4 and (np.abs(arr) > limit).any():
        where = tuple(int(i) for i in np.argwhere(np.abs(arr) > limit)[0])
        raise ZooError(
            f"{path}: {name} holds {arr[where]:.6g} at index {where}, beyond float32's range "
            f"(+-{limit:.4g}) in which the model computes"
        )


def npz_file(cfg: Any, model_cfg: Any) -> Dataset:
    """A user's .npz with arrays x, y and optionally x_val, y_val."""
    return from_arrays(read_npz(cfg.path), cfg, cfg.path)


def csv_file(cfg: Any, model_cfg: Any) -> Dataset:
    """A user's CSV with a header row: `data.target` is y, every other column a feature."""
    return from_arrays(read_csv(cfg.path, cfg.target), cfg, cfg.path)
