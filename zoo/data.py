"""Datasets as arrays on the device, with the task they pose (regression or classification)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from flax import nnx

from zoo.errors import ZooError


@dataclass(frozen=True)
class Dataset:
    """Train and validation arrays; `y` holds targets (regression) or integer labels."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    task: str  # "regression" | "classification"
    num_classes: int | None = None

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def out_features(self) -> int:
        """Width the model's output must have: classes, or the target's last dimension."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[-1])

    def arrays(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        return self.x_train, self.y_train, self.x_val, self.y_val


def model_output_width(model_cfg: Any) -> int:
    """The output width of a deep_nested-style config: its head if any, else its hidden size."""
    return model_cfg.out_features or model_cfg.hidden


def teacher(cfg: Any, model_cfg: Any) -> Dataset:
    """Inputs ~ N(0, 1); targets = a fixed deep_nested teacher (own seed) + Gaussian noise."""
    from zoo.models.deep_nested import OuterModule

    width = model_output_width(model_cfg)
    net = OuterModule(
        cfg.in_features,
        width,
        depth=cfg.teacher_depth,
        activation=cfg.teacher_activation,
        rngs=nnx.Rngs(cfg.teacher_seed),
    )
    key_x, key_noise = jax.random.split(jax.random.key(cfg.seed))
    n = cfg.n_train + cfg.n_val
    x = jax.random.normal(key_x, (n, cfg.in_features))
    y = net(x) + cfg.noise * jax.random.normal(key_noise, (n, width))
    return Dataset(
        x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :], task="regression"
    )


DATASETS: dict[str, Callable[[Any, Any], Dataset]] = {"teacher": teacher}


def make_dataset(data_cfg: Any, model_cfg: Any) -> Dataset:
    """Build the dataset named `data_cfg.name`; the model config supplies shapes it must follow."""
    builder = DATASETS.get(data_cfg.name)
    if builder is None:
        raise ZooError(f"data.name={data_cfg.name!r} is unknown; valid: {', '.join(DATASETS)}")
    return builder(data_cfg, model_cfg)
