"""data=digits: scikit-learn's bundled digits, read as scikit-learn reads them, without its
import (1.7 s)."""

from __future__ import annotations

import sys

import numpy as np

from zoo.data.digits import load_digits


def test_the_digits_are_scikit_learns_and_read_without_importing_it(monkeypatch):
    from sklearn.datasets import load_digits as reference

    expected_x, expected_y = reference(return_X_y=True)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # its import now fails
    x, y = load_digits()
    assert x.dtype == expected_x.dtype and y.dtype == expected_y.dtype
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
