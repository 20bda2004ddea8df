"""What zoo-predict and zoo-export serve: a saved model with what its inputs are and how a train
run prepared them, read from `source=` (a train run directory, or a pretrained directory).

A run brings its data config: the task (regression or classification, its classes), the
columns a CSV-trained model takes by name, and the preprocessing, recomputed exactly as training
did (`data.standardize`: the train rows' mean and std, from the run's own data and split). A bare
pretrained directory brings the model only: inputs go in as they are.

Published checkpoints (transformers, timm) come in through `PUBLISHED_SOURCES`: functions that
recognise their directory and return a `Served` (the language and vision families add theirs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx
from omegaconf import DictConfig, OmegaConf, open_dict

from zoo.errors import ZooError

FEATURES = "features"  # rows of numbers, `in_features` wide
TOKENS = "tokens"  # rows of integer token ids in [0, vocab_size), at most max_len long

SOURCE_KINDS = "a train run directory (with model/ and config.yaml) or a pretrained directory"


@dataclass
class Served:
    """A model in eval mode and what its inputs and outputs are."""

    model: nnx.Module
    name: str  # registry name
    kwargs: dict[str, Any]
    kind: str  # FEATURES, TOKENS, or a kind a data family adds (text prompts, image folders)
    task: str | None  # "classification", "regression", or None: raw outputs (no run to say)
    description: str  # the source, for messages
    num_classes: int | None = None
    width: int | None = None  # features per row, or a run's sequence length (None: any)
    vocab_size: int | None = None
    max_len: int | None = None
    mean: np.ndarray | None = None  # (x - mean) / std: the run's data.standardize
    std: np.ndarray | None = None
    columns: list[str] | None = None  # the feature columns, by name, of a CSV-trained model
    target: str | None = None  # the label column of a CSV-trained model
    extra: dict[str, Any] = field(default_factory=dict)  # a data family's own (tokenizer file)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Rows as the model takes them: float32 features standardized as in training, or int32
        tokens."""
        if self.kind == TOKENS:
            return x.astype(np.int32)
        x = x.astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x


# Functions `directory -> Served | None` for checkpoint layouts other than the zoo's own,
# tried in order on a directory that is neither a run nor a pretrained directory.
PUBLISHED_SOURCES: list[Callable[[Path], Served | None]] = []


def open_served(source: str | None, key: str = "source") -> Served:
    """The model and its inputs from `source`; a ZooError naming what is wrong with it."""
    from zoo.weights.format import CONFIG, WEIGHTS

    if source is None:
        raise ZooError(f"{key} is required: {SOURCE_KINDS}")
    path = Path(source)
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "no such directory"
        raise ZooError(f"{key}={source}: {problem}; give {SOURCE_KINDS}")
    if (path / WEIGHTS).exists() or (path / CONFIG).exists():
        run = path.parent if _is_run(path.parent) and path.name in ("model", "best") else None
        return _serve(path, run)
    if _is_run(path):
        if not (path / "model").is_dir():
            raise ZooError(f"{key}={source}: the run holds no saved model/ (did it finish?)")
        return _serve(path / "model", path)
    for opener in PUBLISHED_SOURCES:
        served = opener(path)
        if served is not None:
            return served
    raise ZooError(f"{key}={source}: not a model directory; give {SOURCE_KINDS}")


def _is_run(path: Path) -> bool:
    from zoo.training.run import RUN_CONFIG

    return (path / RUN_CONFIG).is_file() or (path / ".hydra" / "config.yaml").is_file()


def _serve(model_dir: Path, run_dir: Path | None) -> Served:
    from zoo.models.registry import model_spec
    from zoo.weights.pretrained import from_pretrained

    model = from_pretrained(model_dir)  # eval mode: dropout off
    name, kwargs = model_spec(model)
    served = Served(model, name, dict(kwargs), FEATURES, None, str(model_dir))
    if "in_features" in kwargs:
        served.width = int(kwargs["in_features"])
    elif "vocab_size" in kwargs and "max_len" in kwargs:
        served.kind, served.task = TOKENS, "classification"  # logits over tokens per position
        served.vocab_size, served.max_len = int(kwargs["vocab_size"]), int(kwargs["max_len"])
    else:
        raise ZooError(
            f"{model_dir}: model {name!r} takes neither feature rows (in_features) nor token "
            "sequences (vocab_size, max_len); zoo-predict cannot feed it"
        )
    if run_dir is not None:
        _from_run(served, run_dir)
    return served


def _from_run(served: Served, run_dir: Path) -> None:
    """The run's task, classes, columns and preprocessing, from its config and its data."""
    from zoo.app.evaluation import run_config
    from zoo.data.arrays import standardization
    from zoo.data.dataset import make_dataset

    cfg = run_config(run_dir, data_from_launch=True)
    data_cfg = cfg.data
    standardize = bool(data_cfg.get("standardize", False))
    if standardize:  # the train rows as they were before scaling: their mean and std
        data_cfg = _copy_with(data_cfg, standardize=False)
    try:
        data = make_dataset(data_cfg, cfg.model)
    except ZooError as err:
        raise ZooError(
            f"source={run_dir}: the run's data gives its task and preprocessing: {err}"
        ) from None
    served.task, served.num_classes = data.task, data.num_classes
    if data.vocab_size is None:
        if data.in_features != served.width:
            raise ZooError(
                f"source={run_dir}: its data has {data.in_features} features but its model "
                f"takes {served.width}"
            )
    else:
        served.width = int(data.x_train.shape[-1])
    if standardize:
        served.mean, served.std = standardization(np.asarray(data.x_train))
    if cfg.data.name == "csv":  # the features by name: the training file's header
        from zoo.data.streams import CsvRows

        with contextlib.closing(CsvRows(cfg.data.path)) as rows:
            served.columns = [c for c in rows.header if c != cfg.data.target]
        served.target = str(cfg.data.target)


def _copy_with(node: DictConfig, **changes: Any) -> DictConfig:
    copy = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    with open_dict(copy):
        for key, value in changes.items():
            copy[key] = value
    return copy
