"""Datasets as arrays on the device, with the task they pose (regression or classification)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.errors import ZooError

log = logging.getLogger(__name__)


@partial(
    jax.tree_util.register_dataclass,  # a pytree, so that jax.eval_shape gives its shapes
    data_fields=["x_train", "y_train", "x_val", "y_val"],
    meta_fields=["task", "num_classes", "vocab_size"],
)
@dataclass(frozen=True)
class Dataset:
    """Train and validation arrays; `y` holds targets (regression) or integer labels."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    task: str  # "regression" | "classification"
    num_classes: int | None = None
    vocab_size: int | None = None  # set when the inputs are integer tokens in [0, vocab_size)

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def out_features(self) -> int:
        """Width the model's output must have: classes, or the target's last dimension."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[-1])

    def model_inputs(self) -> dict[str, int]:
        """The model keys the inputs determine: `in_features` for feature vectors; `vocab_size`
        and `max_len` (the sequence length) for token sequences."""
        if self.vocab_size is not None:
            return {"vocab_size": self.vocab_size, "max_len": int(self.x_train.shape[-1])}
        return {"in_features": self.in_features}

    def arrays(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        return self.x_train, self.y_train, self.x_val, self.y_val


def model_output_width(model_cfg: Any) -> int | None:
    """The output width a model config declares: its head (`out_features`) if any, else its last
    hidden width (`hidden`, or the last of `widths`); None if it declares none of these."""
    widths = model_cfg.get("widths") or [None]
    return model_cfg.get("out_features") or model_cfg.get("hidden") or widths[-1]


def teacher(cfg: Any, model_cfg: Any) -> Dataset:
    """Inputs ~ N(0, 1); targets = a fixed deep_nested teacher (own seed) + Gaussian noise."""
    width = model_output_width(model_cfg)
    if width is None:
        raise ZooError(
            f"data=teacher cannot tell model {model_cfg.get('name')!r}'s output width: "
            "set model.out_features"
        )
    spec = TeacherSpec(
        int(cfg.in_features),
        int(width),
        int(cfg.teacher_depth),
        str(cfg.teacher_activation),
        int(cfg.teacher_seed),
        int(cfg.seed),
        int(cfg.n_train),
        int(cfg.n_val),
        float(cfg.noise),
    )
    return Dataset(*teacher_arrays(spec), task="regression")


class TeacherSpec(NamedTuple):
    """What decides data=teacher's arrays: hashable, the static argument of `teacher_arrays`."""

    in_features: int
    width: int
    depth: int
    activation: str
    teacher_seed: int
    seed: int
    n_train: int
    n_val: int
    noise: float


# One compiled program instead of a dozen eager ones, and a module-level jit keyed by the spec:
# make_dataset's size check (jax.eval_shape) and the generation share one trace.
@partial(jax.jit, static_argnums=0)
def teacher_arrays(spec: TeacherSpec) -> tuple[jax.Array, ...]:
    from zoo.models.deep_nested import OuterModule

    net = OuterModule(
        spec.in_features,
        spec.width,
        depth=spec.depth,
        activation=spec.activation,
        rngs=nnx.Rngs(spec.teacher_seed),
    )
    n, n_train = spec.n_train + spec.n_val, spec.n_train
    key_x, key_noise = jax.random.split(jax.random.key(spec.seed))
    x = jax.random.normal(key_x, (n, spec.in_features))
    y = net(x) + spec.noise * jax.random.normal(key_noise, (n, spec.width))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# --- a user's files and bundled sets: NumPy arrays -> a split, standardized Dataset -------------


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
    from zoo.datafiles import is_integer_labels

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
    if cfg.standardize:  # with the train rows' statistics; constant features stay as they are
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        x, x_val = (x - mean) / std, (x_val - mean) / std
    if task == "classification":
        y, y_val = (arrays[k].astype(np.int32) for k in ("y", "y_val"))
    else:
        y, y_val = (
            arrays[k].astype(np.float32).reshape(len(arrays[k]), -1) for k in ("y", "y_val")
        )
    return Dataset(*map(jnp.asarray, (x, y, x_val, y_val)), task=task, num_classes=num_classes)


def npz_file(cfg: Any, model_cfg: Any) -> Dataset:
    """A user's .npz with arrays x, y and optionally x_val, y_val."""
    from zoo.datafiles import read_npz

    return from_arrays(read_npz(cfg.path), cfg, cfg.path)


def csv_file(cfg: Any, model_cfg: Any) -> Dataset:
    """A user's CSV with a header row: `data.target` is y, every other column a feature."""
    from zoo.datafiles import read_csv

    return from_arrays(read_csv(cfg.path, cfg.target), cfg, cfg.path)


def digits(cfg: Any, model_cfg: Any) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 64 features, 10 classes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ZooError(
            "data=digits needs scikit-learn: pip install 'zoo[data]' (make install includes it)"
        ) from None
    x, y = load_digits(return_X_y=True)
    return from_arrays({"x": x, "y": y}, cfg, "digits")


# Sequence rules: token sequences `(n, length)` -> the target token at each position.
SEQUENCE_RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "reverse": lambda x: x[:, ::-1],
    "sort": lambda x: jnp.sort(x, axis=-1),
}


def sequence(cfg: Any, model_cfg: Any) -> Dataset:
    """Random token sequences (ids in [0, vocab_size), fixed length) and, per position, the token
    the rule puts there: `reverse` the sequence or `sort` it. Determined by `cfg.seed`."""
    if cfg.rule not in SEQUENCE_RULES:
        raise ZooError(f"data.rule={cfg.rule!r} is unknown; valid: {', '.join(SEQUENCE_RULES)}")
    n = cfg.n_train + cfg.n_val
    x = jax.random.randint(jax.random.key(cfg.seed), (n, cfg.length), 0, cfg.vocab_size)
    y = SEQUENCE_RULES[cfg.rule](x)
    return Dataset(
        x[: cfg.n_train],
        y[: cfg.n_train],
        x[cfg.n_train :],
        y[cfg.n_train :],
        task="classification",
        num_classes=cfg.vocab_size,
        vocab_size=cfg.vocab_size,
    )


DATASETS: dict[str, Callable[[Any, Any], Dataset]] = {
    "teacher": teacher,
    "npz": npz_file,
    "csv": csv_file,
    "digits": digits,
    "sequence": sequence,
}


# Datasets generated from the config: their size is checked from their shapes before generating.
GENERATED = {"teacher", "sequence"}


def _builder(data_cfg: Any) -> Callable[[Any, Any], Dataset]:
    builder = DATASETS.get(data_cfg.name)
    if builder is None:
        raise ZooError(f"data.name={data_cfg.name!r} is unknown; valid: {', '.join(DATASETS)}")
    return builder


def abstract_dataset(data_cfg: Any, model_cfg: Any) -> Dataset:
    """The dataset's shapes (jax.ShapeDtypeStruct), task and classes, without generating its
    arrays (a file is still read: its labels decide the task)."""
    builder = _builder(data_cfg)
    return jax.eval_shape(lambda: builder(data_cfg, model_cfg))


def make_dataset(data_cfg: Any, model_cfg: Any) -> Dataset:
    """Build the dataset named `data_cfg.name`; the model config supplies shapes it must follow."""
    from zoo.memory import nbytes, require_memory

    builder = _builder(data_cfg)
    if data_cfg.name in GENERATED:
        shapes = abstract_dataset(data_cfg, model_cfg).arrays()
        rows = shapes[0].shape[0] + shapes[2].shape[0]
        x, y = ((rows, *a.shape[1:]) for a in shapes[:2])
        require_memory(nbytes(shapes), f"data={data_cfg.name} (x {x}, y {y})")
    data = builder(data_cfg, model_cfg)
    source = data_cfg.get("path") or f"data={data_cfg.name}"
    names = ("train inputs", "train targets", "validation inputs", "validation targets")
    for name, array in zip(names, data.arrays(), strict=True):
        values = np.asarray(array)  # numpy: no compile for a one-off check
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            raise ZooError(f"{source}: the {name} hold non-finite values")
    return data
