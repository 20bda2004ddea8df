"""data=digits: scikit-learn's bundled handwritten digits (only its bundled data sets are used)."""

from __future__ import annotations

from typing import Any

from zoo.data.arrays import from_arrays
from zoo.data.dataset import Dataset
from zoo.errors import ZooError


def digits(cfg: Any, model_cfg: Any) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 64 features, 10 classes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ZooError(
            "data=digits needs scikit-learn: pip install 'zoo[data]' (make install includes it)"
        ) from None
    x, y = load_digits(return_X_y=True)
    if cfg.get("images"):
        x = x.reshape(-1, 8, 8, 1)  # NHWC
    return from_arrays({"x": x, "y": y}, cfg, "digits")
