"""Datasets as arrays on the device, with the task they pose (regression or classification), built
by name through the one registry: `data=<name>` is the `data` group's component `<name>`, whose
builder takes the data config and the model config and returns a `Dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import numpy as np

from zoo.config import registry
from zoo.errors import ZooError
from zoo.memory import nbytes, require_memory


@partial(
    jax.tree_util.register_dataclass,  # a pytree, so that jax.eval_shape gives its shapes
    data_fields=["x_train", "y_train", "x_val", "y_val"],
    meta_fields=["task", "num_classes", "vocab_size", "stream", "augment"],
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
    # Training windows read on the host for each step (data=text's TokenWindows), x_train and
    # y_train then being empty: `windows(first, last, shape)` gives steps first..last-1's tokens.
    stream: Any = None
    # (train batch, step, example indices) -> the batch augmented in training; None: as it is
    augment: Any = None

    @property
    def n_train(self) -> int:
        """Training examples: rows, or the windows the stream draws from."""
        return self.stream.count if self.stream is not None else len(self.x_train)

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def out_features(self) -> int:
        """Width the model's output must have: classes, or the target's last dimension."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[-1])

    def model_inputs(self) -> dict[str, int]:
        """The model keys the inputs determine: `in_features` for feature vectors; `vocab_size`
        and `max_len` (the sequence length) for token sequences; `in_channels` and `image_size`
        for square NHWC images."""
        if self.x_train.ndim == 4:
            return {"in_channels": self.in_features, "image_size": int(self.x_train.shape[1])}
        if self.vocab_size is not None:
            return {"vocab_size": self.vocab_size, "max_len": int(self.x_train.shape[-1])}
        return {"in_features": self.in_features}

    def arrays(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        return self.x_train, self.y_train, self.x_val, self.y_val


def _builder(data_cfg: Any) -> Any:
    try:
        return registry.builder("data", data_cfg.name)
    except registry.UnknownComponent:
        valid = ", ".join(registry.names("data"))
        raise ZooError(f"data.name={data_cfg.name!r} is unknown; valid: {valid}") from None


def _generated(data_cfg: Any) -> bool:
    """Whether the data set is generated from its config (its declaration says `generated`):
    its size is then checked from its shapes before generating."""
    return bool(getattr(registry.declaration("data", data_cfg.name), "generated", False))


def abstract_dataset(data_cfg: Any, model_cfg: Any) -> Dataset:
    """The dataset's shapes (jax.ShapeDtypeStruct), task and classes, without generating its
    arrays (a file is still read: its labels decide the task)."""
    builder = _builder(data_cfg)
    return jax.eval_shape(lambda: builder(data_cfg, model_cfg))


def make_dataset(data_cfg: Any, model_cfg: Any) -> Dataset:
    """Build the dataset named `data_cfg.name`; the model config supplies shapes it must follow."""
    builder = _builder(data_cfg)
    if _generated(data_cfg):
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
