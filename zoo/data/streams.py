"""A user's rows read a chunk at a time: a CSV with a header, or the arrays of an .npz, never all
in memory (zoo-predict on a file of any size).

The same checks as reading a whole data file (zoo/data/user_files.py): every CSV cell a plain
finite number, column names distinct, .npz members plain numeric arrays read with their header
checked first (no pickle); each problem a ZooError naming the file, and for a CSV the line.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from zoo.data.user_files import (
    CSV_NUMBER,
    CSV_SPACE,
    _check_column_names,
    _csv_number,
    _existing_file,
    _gist,
)
from zoo.errors import ZooError

FLOAT32_MAX = float(np.finfo(np.float32).max)
_CELL = rf"[{CSV_SPACE}]*(?:{CSV_NUMBER.pattern})[{CSV_SPACE}]*"
_ROW = re.compile(rf"{_CELL}(?:,{_CELL})*", re.ASCII)  # a row of plain numbers, joined by ","


@dataclass(frozen=True)
class Chunk:
    """Rows of a file: `values` (rows, columns) and where each row is (`lines`: a CSV's line
    numbers, an .npz's row indices), for messages about a row."""

    values: np.ndarray
    lines: np.ndarray

    def where(self, path: Path, i: int) -> str:
        """`<file>: line <n>` (a CSV) or `<file>: row <n>` (an .npz) for the chunk's row `i`."""
        return f"{path}: {'row' if path.suffix == '.npz' else 'line'} {self.lines[i]}"


class CsvRows:
    """A CSV with a header row, read `rows` data rows at a time as float64 (exact for integers up
    to 2**53 and for any float32). Blank lines are skipped, as reading the whole file does.

    A chunk whose lines are all plain numbers is converted by numpy's C parser; a chunk with
    anything else (quotes, a word, a missing field) is read line by line by the csv module, to
    take what it can and name the line and column of what it cannot."""

    def __init__(self, path: str | Path) -> None:
        self.path = _existing_file(path)
        self.size = self.path.stat().st_size
        self._binary = open(self.path, "rb")  # noqa: SIM115  (closed by close())
        self._text = io.TextIOWrapper(self._binary, encoding="utf-8-sig")  # any line ending
        self._line = 0
        while (line := self._next_line()) is not None and not line.strip():
            pass
        if line is None:
            self.close()
            raise ZooError(f"{self.path}: the file is empty")
        self.header = [name.strip() for name in self._cells(line)]
        _check_column_names(self.path, self.header)

    def position(self) -> int:
        """Bytes read so far (for a progress bar)."""
        return self._binary.tell()

    def close(self) -> None:
        self._binary.close()

    def _next_line(self) -> str | None:
        try:
            line = self._text.readline()
        except (OSError, UnicodeDecodeError) as err:
            raise ZooError(
                f"{self.path}: line {self._line + 1}: not readable as CSV ({_gist(err)})"
            ) from None
        if not line:
            return None
        self._line += 1
        return line

    def _cells(self, line: str) -> list[str]:
        try:
            return next(csv.reader([line]), [])
        except csv.Error as err:
            raise ZooError(
                f"{self.path}: line {self._line}: not readable as CSV ({_gist(err)})"
            ) from None

    def chunks(self, rows: int) -> Iterator[Chunk]:
        """The data rows, `rows` at a time (the last chunk may hold fewer)."""
        while True:
            texts, lines = [], []
            while len(texts) < rows and (line := self._next_line()) is not None:
                if line.strip(f"{CSV_SPACE},\r\n"):  # a line of empty cells is blank too
                    texts.append(line)
                    lines.append(self._line)
            if not texts:
                return
            yield Chunk(self._numbers(texts, lines), np.asarray(lines))
            if len(texts) < rows:
                return

    def _numbers(self, texts: list[str], lines: list[int]) -> np.ndarray:
        width = len(self.header)
        if all(_ROW.fullmatch(text.rstrip("\r\n")) for text in texts):
            try:
                with np.errstate(over="ignore"):
                    values = np.loadtxt(texts, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError:  # a row of another width: found below
                values = None
            if (
                values is not None
                and values.shape == (len(texts), width)
                and np.isfinite(values).all()
                and not (np.abs(values) > FLOAT32_MAX).any()
            ):
                return values
        values = np.empty((len(texts), width), dtype=np.float64)
        for i, (text, line) in enumerate(zip(texts, lines, strict=True)):
            self._line = line  # for a csv.Error's message
            row = self._cells(text)
            if len(row) != width:
                raise ZooError(
                    f"{self.path}: line {line} has {len(row)} fields, the header {width}"
                )
            for j, (name, cell) in enumerate(zip(self.header, row, strict=True)):
                where = f"{self.path}: line {line}, column {name!r}"
                value = _csv_number(cell, where)
                if abs(value) > FLOAT32_MAX:
                    raise ZooError(
                        f"{where}: {value:.6g} is beyond float32's range (+-{FLOAT32_MAX:.4g}) "
                        "in which the model computes"
                    )
                values[i, j] = value
        self._line = lines[-1]
        return values


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    data_start: int


class NpzRows:
    """Named arrays of an .npz, read along their first (row) axis a chunk at a time, each
    member's .npy header checked before its data is read: plain numeric dtypes, C order, as many
    bytes as the header says."""

    def __init__(self, path: str | Path) -> None:
        self.path = _existing_file(path)
        if not zipfile.is_zipfile(self.path):
            raise ZooError(f"{self.path}: not an .npz file (write one with numpy.savez)")
        try:
            self._archive = zipfile.ZipFile(self.path)
            infos = self._archive.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise ZooError(f"{self.path}: a damaged .npz file ({_gist(err)})") from None
        self.names = sorted(i.filename.removesuffix(".npy") for i in infos)
        self._infos = {i.filename: i for i in infos}
        self._members: dict[str, _Member] = {}

    def close(self) -> None:
        self._archive.close()

    def member(self, name: str) -> _Member:
        """Array `name`'s header, checked; a ZooError naming the file if it is absent or unfit."""
        if name in self._members:
            return self._members[name]
        info = self._infos.get(f"{name}.npy")
        if info is None:
            found = ", ".join(self.names) or "none"
            raise ZooError(f"{self.path}: no array {name!r} (found: {found})")
        try:
            with self._archive.open(info) as file:
                version = np.lib.format.read_magic(file)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read(file)
                start = file.tell()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as err:
            raise ZooError(f"{self.path}: {name} is not a readable array ({_gist(err)})") from None
        if dtype.hasobject or not (
            np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
        ):
            raise ZooError(f"{self.path}: {name} holds {dtype} values; it must be numeric")
        if not shape:
            raise ZooError(f"{self.path}: {name} is a scalar; it needs one entry per row")
        held = info.file_size - start
        nbytes = math.prod(shape) * dtype.itemsize
        if held < nbytes:
            raise ZooError(
                f"{self.path}: {name} is cut short: its header says {dtype} {tuple(shape)} "
                f"({nbytes:,} bytes) but it holds {max(held, 0):,} bytes"
            )
        if fortran and len(shape) > 1:
            raise ZooError(
                f"{self.path}: {name} is stored in Fortran order; save it in C order "
                "(numpy.ascontiguousarray) to be read row by row"
            )
        member = _Member(info, dtype, tuple(shape), fortran, start)
        self._members[name] = member
        return member

    def chunks(self, name: str, rows: int) -> Iterator[Chunk]:
        """Array `name`, `rows` rows at a time, in its own dtype."""
        member = self.member(name)
        row_shape = member.shape[1:]
        row_bytes = math.prod(row_shape) * member.dtype.itemsize
        try:
            with self._archive.open(member.info) as file:
                _skip(file, member.data_start)
                for first in range(0, member.shape[0], rows):
                    n = min(rows, member.shape[0] - first)
                    data = file.read(n * row_bytes)
                    if len(data) < n * row_bytes:
                        raise EOFError("the member ends early")
                    values = np.frombuffer(data, dtype=member.dtype).reshape(n, *row_shape)
                    yield Chunk(values, np.arange(first, first + n))
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
            raise ZooError(f"{self.path}: a damaged .npz file ({_gist(err)})") from None


def _skip(file: BinaryIO, count: int) -> None:
    while count > 0:
        got = len(file.read(min(count, 1 << 16)))
        if not got:
            raise EOFError("the member ends in its header")
        count -= got
