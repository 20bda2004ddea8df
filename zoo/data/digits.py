"""data=digits: scikit-learn's bundled handwritten digits (only its bundled data sets are used).

The digits are the CSV file scikit-learn ships, read as its `load_digits` reads it, found without
importing scikit-learn: that import (scipy's with it) takes 1.7 s, a hundred times the reading.
Where the file is not at its place, `load_digits` itself reads it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.arrays import from_arrays
from zoo.data.dataset import Dataset
from zoo.errors import ZooError

_MISSING = "data=digits needs scikit-learn: pip install 'zoo[data]' (make install includes it)"


def digits(cfg: Any, model_cfg: Any) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 64 features, 10 classes."""
    x, y = load_digits()
    if cfg.get("images"):
        x = x.reshape(-1, 8, 8, 1)  # NHWC
    return from_arrays({"x": x, "y": y}, cfg, "digits")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """`sklearn.datasets.load_digits(return_X_y=True)`: the pixels (float64) and the labels."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is None:
        raise ZooError(_MISSING)
    for root in spec.submodule_search_locations or ():
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")  # the file's columns: 64 pixels, the label
            return data[:, :-1], data[:, -1].astype(int)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:  # an installation without its datasets
        raise ZooError(_MISSING) from None
    return sklearn_load_digits(return_X_y=True)
