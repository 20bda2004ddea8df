"""Rows of a user's file a chunk at a time (zoo/data/streams.py): the same numbers and the same
one-line errors as reading the whole file, with the line each row came from."""

from __future__ import annotations

import re

import numpy as np
import pytest

from zoo.data.streams import CsvRows, NpzRows
from zoo.errors import ZooError


def chunks(path, rows):
    reader = CsvRows(path)
    try:
        return reader.header, list(reader.chunks(rows))
    finally:
        reader.close()


def test_csv_chunks_hold_every_row_once_with_its_line_whatever_the_line_endings(tmp_path):
    path = tmp_path / "rows.csv"
    text = 'a, b ,c\r\n1,2,3\r\n\r\n,,\r\n4.5, -6e2 ,7\r\n"8",9,10\r\n11,12,13\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's BOM
    header, parts = chunks(path, 2)
    assert header == ["a", "b", "c"]
    assert [len(c.values) for c in parts] == [2, 2]  # blank lines and empty cells skipped
    values = np.concatenate([c.values for c in parts])
    np.testing.assert_array_equal(values, [[1, 2, 3], [4.5, -600, 7], [8, 9, 10], [11, 12, 13]])
    assert np.concatenate([c.lines for c in parts]).tolist() == [2, 5, 6, 7]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2,3\n4,5\n", "line 3 has 2 fields, the header 3"),
        ("1,2,3\n4,1_0,6\n", "line 3, column 'b': '1_0' is not a plain number"),
        ("1,2,3\n4,5,nan\n", "line 3, column 'c': 'nan' is not finite"),
        ("1,2,3\n4,5,1e39\n", "line 3, column 'c': 1e+39 is beyond float32's range"),
        ('1,2,3\n"4,5,6\n', "line 3 has 1 fields, the header 3"),
    ],
)
def test_a_bad_csv_row_is_named_by_line_and_column(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n" + body)
    with pytest.raises(ZooError, match=re.escape(message)):
        chunks(path, 100)


def test_npz_members_are_read_in_chunks_and_checked_from_their_header(tmp_path):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.savez_compressed(tmp_path / "rows.npz", x=x, y=np.arange(10))
    npz = NpzRows(tmp_path / "rows.npz")
    parts = list(npz.chunks("x", 4))
    assert [len(c.values) for c in parts] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([c.values for c in parts]), x)
    with pytest.raises(ZooError, match=r"no array 'z' \(found: x, y\)"):
        npz.member("z")
    npz.close()
