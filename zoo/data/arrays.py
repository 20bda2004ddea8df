"""From a user's NumPy arrays (their files, bundled sets) to a split, standardized Dataset: the
task guessed or checked, classes counted before any size is trusted, validation rows held out.
"""

from __future__ import annotations

import logging
from typing import Any

import jax.numpy as jnp
import numpy as np

from zoo.data.dataset import Dataset
from zoo.errors import ZooError

log = logging.getLogger(__name__)


def split_off_val(arrays: dict[str, np.ndarray], fraction: float, seed: int) -> None:
    """Move a `fraction` of the rows (at least one) of `x`, `y` into `x_val`, `y_val`, chosen by
    a permutation from `seed`: the same file and seed give the same split."""
    n = len(arrays["x"])
    n_val = min(max(1, round(n * fraction)), n - 1)
    if n_val < 1:
        raise ZooError(f"{n} row(s) cannot be split into train and validation; give x_val, y_val")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    for name in ("x", "y"):
        arrays[f"{name}_val"] = arrays[name][val]
        arrays[name] = arrays[name][train]


# The task guess takes integer labels for classes only when they look like classes: 0..K-1 with
# K at most this, and at most half the rows (two examples a class on average). Integer prices,
# counts or ids are regression; data.task=classification insists (K up to the number of rows).
MAX_GUESSED_CLASSES = 1000


def count_classes(arrays: dict[str, np.ndarray], limit: int) -> tuple[int | None, str]:
    """K when `y` (and `y_val`) can be class labels 0..K-1 with K <= `limit`; else None and why
    not, checked on the values alone so that no label decides a size before it is checked."""
    present = [name for name in ("y", "y_val") if name in arrays]
    for name in present:
        labels = arrays[name]
        if labels.ndim != 1:
            return None, f"{name} has shape {labels.shape}, not one label per row"
        if not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(
            labels, np.round(labels)
        ):
            return None, f"{name} holds values that are not whole numbers"
        if labels.min() < 0:
            return None, f"{name} holds a negative value ({labels.min()})"
    largest = max(int(arrays[name].max()) for name in present)
    if largest + 1 > limit:
        return None, f"its largest value, {largest}, would make {largest + 1:,} classes"
    return largest + 1, ""


def check_val_labels(y: np.ndarray, y_val: np.ndarray, source: str) -> None:
    """A ZooError for given validation labels beyond the training labels' classes 0..max(y):
    the model would be scored on classes it never trains on (or the labels are numbers)."""
    largest = int(y.max())
    unseen = y_val[y_val > largest]
    if len(unseen):
        raise ZooError(
            f"{source}: y_val holds labels up to {int(unseen.max())} ({len(unseen)} of "
            f"{len(y_val)} rows), but y's classes are 0..{largest}: the model would be scored on "
            "classes it never trains on (or data.task=regression, if the labels are numbers)"
        )


def from_arrays(arrays: dict[str, np.ndarray], cfg: Any, source: str) -> Dataset:
    """A Dataset from checked NumPy arrays and a data config with `task`, `val_fraction`, `seed`
    and `standardize`. `task: auto` means classification when `y` holds integer labels that look
    like classes (see MAX_GUESSED_CLASSES)."""
    arrays = dict(arrays)
    rows = sum(len(arrays[name]) for name in ("y", "y_val") if name in arrays)
    task = cfg.task
    num_classes = None
    if task == "auto":
        task = "regression"
        if is_integer_labels(arrays["y"]):
            limit = max(2, min(MAX_GUESSED_CLASSES, rows // 2))
            num_classes, why = count_classes(arrays, limit)
            if num_classes is not None:
                task = "classification"
            else:
                log.info(
                    "%s: y holds integers but not class labels 0..K-1 with K <= %d (%s): "
                    "regression (data.task=classification insists)",
                    source,
                    limit,
                    why,
                )
        log.info("%s: task=%s (set data.task to choose)", source, task)
    elif task == "classification":
        num_classes, why = count_classes(arrays, rows)
        if num_classes is None:
            raise ZooError(
                f"{source}: data.task=classification, but the targets cannot be class labels: "
                f"{why} (labels are 0..K-1, K at most the number of rows, {rows})"
            )
    if task == "classification" and len(np.unique(arrays["y"])) < 2:
        raise ZooError(f"{source}: y holds a single class; classification needs at least 2")
    if task == "classification" and "y_val" in arrays:
        check_val_labels(arrays["y"], arrays["y_val"], source)
    if "x_val" not in arrays:
        split_off_val(arrays, cfg.val_fraction, cfg.seed)
        log.info(
            "%s: %d of %d rows held out for validation (data.val_fraction=%s, data.seed=%d)",
            source,
            len(arrays["x_val"]),
            len(arrays["x_val"]) + len(arrays["x"]),
            cfg.val_fraction,
            cfg.seed,
        )
    x, x_val = arrays["x"].astype(np.float32), arrays["x_val"].astype(np.float32)
    if cfg.standardize:  # with the train rows' statistics
        mean, std = standardization(x)
        x, x_val = (x - mean) / std, (x_val - mean) / std
    if task == "classification":
        y, y_val = (arrays[k].astype(np.int32) for k in ("y", "y_val"))
    else:
        y, y_val = (
            arrays[k].astype(np.float32).reshape(len(arrays[k]), -1) for k in ("y", "y_val")
        )
    return Dataset(*map(jnp.asarray, (x, y, x_val, y_val)), task=task, num_classes=num_classes)


def is_integer_labels(y: np.ndarray) -> bool:
    """True for integer class labels: an integer 1-D array."""
    return np.issubdtype(y.dtype, np.integer) and y.ndim == 1


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and standard deviation per feature (column) of the train inputs `x` that
    `data.standardize` scales every input by, `(x - mean) / std`: a constant feature's std is 1,
    so it stays as it is. zoo-predict and zoo-export apply the same to new rows."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    return mean, std
