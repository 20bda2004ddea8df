"""zoo-predict's output files, chosen by extension, written a chunk of rows at a time into a
temporary file beside the output that replaces it only when every row is in (zoo.files.replacing):
a failure leaves no file, or the old one whole.

Each row holds a `row` number (its place in the input, from 0) and named fields, each an array of
a fixed shape per row: `class`, `probability` (and with top_k > 1 `top_classes`,
`top_probabilities`) for classification, `value` for regression; a token model has one per
position. A .csv or .parquet spells a field of shape S as one column per entry (`class_3`,
`top_classes_3_0`), a .jsonl as nested lists, an .npz as an array of shape (rows, *S).
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from zoo.errors import ZooError

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape per row, dtype)


def column_names(fields: Fields) -> list[str]:
    """`row`, then a field of shape () as its name, of shape S as `name_i_j` per entry."""
    names = ["row"]
    for name, (shape, _) in fields.items():
        names += [
            "_".join([name, *map(str, index)]) for index in itertools.product(*map(range, shape))
        ]
    return names


class Writer:
    """Rows to one file: `write(first_row, arrays)` per chunk, then `close()`."""

    def __init__(self, path: Path, fields: Fields) -> None:
        self.path, self.fields = path, fields

    def write(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _flat(first: int, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    n = len(next(iter(arrays.values())))
    return [np.arange(first, first + n)] + [a.reshape(n, -1).T for a in arrays.values()]


class CsvWriter(Writer):
    def __init__(self, path: Path, fields: Fields) -> None:
        super().__init__(path, fields)
        self._file: TextIO = open(path, "w", newline="")  # noqa: SIM115  (closed by close())
        self._csv = csv.writer(self._file)
        self._csv.writerow(column_names(fields))

    def write(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        columns: list[list[str]] = []
        for block in _flat(first, arrays):
            for column in np.atleast_2d(block):
                if np.issubdtype(column.dtype, np.floating):  # 9 digits: float32 exactly
                    columns.append([f"{v:.9g}" for v in column.tolist()])
                else:
                    columns.append([str(v) for v in column.tolist()])
        self._csv.writerows(zip(*columns, strict=True))

    def close(self) -> None:
        self._file.close()


class JsonlWriter(Writer):
    def __init__(self, path: Path, fields: Fields) -> None:
        super().__init__(path, fields)
        self._file: TextIO = open(path, "w")  # noqa: SIM115  (closed by close())

    def write(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        lists = {name: a.tolist() for name, a in arrays.items()}  # float32 -> exact floats
        for i in range(len(next(iter(lists.values())))):
            row = {"row": first + i} | {name: values[i] for name, values in lists.items()}
            self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self._file.close()


class NpzWriter(Writer):
    """Kept in memory until the end (an .npz is a zip of whole arrays); the outputs are a few
    numbers a row, far smaller than the input."""

    def __init__(self, path: Path, fields: Fields) -> None:
        super().__init__(path, fields)
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in ("row", *fields)}

    def write(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        n = len(next(iter(arrays.values())))
        self._parts["row"].append(np.arange(first, first + n))
        for name, array in arrays.items():
            self._parts[name].append(array)

    def close(self) -> None:
        arrays = {
            name: np.concatenate(parts)
            if parts
            else np.zeros((0, *self.fields.get(name, ((), np.int64))[0]))
            for name, parts in self._parts.items()
        }
        with open(self.path, "wb") as file:  # a file object: savez adds no `.npz` to the name
            np.savez(file, **arrays)


class ParquetWriter(Writer):
    """One row group per chunk (pyarrow)."""

    def __init__(self, path: Path, fields: Fields) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(path, fields)
        self._pa = pa
        self._names = column_names(fields)
        self._writer: Any = None
        self._pq = pq

    def write(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        columns = [c for block in _flat(first, arrays) for c in np.atleast_2d(block)]
        table = self._pa.table(dict(zip(self._names, columns, strict=True)))
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(str(self.path), table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


WRITERS: dict[str, type[Writer]] = {
    ".csv": CsvWriter,
    ".jsonl": JsonlWriter,
    ".npz": NpzWriter,
    ".parquet": ParquetWriter,
}


def writer_class(output: Path, key: str = "output") -> type[Writer]:
    """The writer for `output`'s extension; a ZooError for another, or for .parquet without
    pyarrow."""
    suffix = output.suffix.lower()
    if suffix not in WRITERS:
        raise ZooError(
            f"{key}={output}: unknown extension {suffix or '(none)'!r}; valid: {', '.join(WRITERS)}"
        )
    if suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ZooError(
                f"{key}={output}: writing .parquet needs pyarrow (pip install pyarrow)"
            ) from None
    return WRITERS[suffix]
