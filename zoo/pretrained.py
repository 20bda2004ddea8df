"""Pretrained files: `model.safetensors` (weights by attribute path) + `config.json` (name, args).

Loading never runs anything named by the files: the model is rebuilt through the registry by its
name, and the weights are plain tensors checked against the rebuilt model's names and shapes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from zoo.errors import ZooError
from zoo.registry import create_model, get_model_class, model_spec

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def _weights(model: nnx.Module) -> dict[str, nnx.Variable]:
    """Saved variables keyed by their dotted attribute path (`middle.inner.kernel`)."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    return {".".join(map(str, path)): var for path, var in nnx.to_flat_state(state)}


def save_pretrained(model: nnx.Module, directory: str | os.PathLike) -> Path:
    """Write `model` to `directory` atomically: a reader sees the old files or the new, whole."""
    name, kwargs = model_spec(model)
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: np.asarray(jax.device_get(var[...])) for key, var in _weights(model).items()}
    config = {"format_version": FORMAT_VERSION, "model": name, "kwargs": kwargs}
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS))
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_config(directory: Path) -> tuple[str, dict[str, Any]]:
    """The model name and JSON-plain constructor arguments from `config.json`, checked."""
    path = directory / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file (not a pretrained directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{path}: unreadable config ({err})") from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("model"), str)
        or not isinstance(config.get("kwargs"), dict)
    ):
        raise ZooError(f"{path}: expected an object with a 'model' name and 'kwargs'")
    kwargs = config["kwargs"]
    for key, value in kwargs.items():
        if key.startswith("_") or not _is_plain(value):
            raise ZooError(f"{path}: argument {key!r} is not allowed in a pretrained config")
    get_model_class(config["model"])  # unknown names fail here, before anything is built
    return config["model"], kwargs


def _is_plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(map(_is_plain, value))
    return value is None or isinstance(value, bool | int | float | str)


def from_pretrained(directory: str | os.PathLike) -> nnx.Module:
    """Rebuild the model saved in `directory` through the registry and load its weights.

    Every missing, unexpected, mis-shaped or mis-typed tensor is reported in one ZooError.
    """
    directory = Path(directory)
    name, kwargs = read_config(directory)
    try:
        model = create_model(name, rngs=nnx.Rngs(0), **kwargs)
    except (TypeError, ValueError) as err:
        raise ZooError(f"{directory / CONFIG}: cannot build model {name!r}: {err}") from None
    path = directory / WEIGHTS
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file") from None
    except (OSError, SafetensorError) as err:
        raise ZooError(f"{path}: unreadable weights ({err})") from None

    expected = _weights(model)
    problems = [f"missing tensor {k}" for k in expected if k not in tensors]
    problems += [f"unexpected tensor {k}" for k in tensors if k not in expected]
    for key, var in expected.items():
        if key in tensors:
            got, want = tensors[key], var[...]
            if got.shape != want.shape or got.dtype != want.dtype:
                problems.append(
                    f"{key}: file has {got.dtype}{list(got.shape)}, "
                    f"model wants {want.dtype}{list(want.shape)}"
                )
            elif not np.isfinite(got).all():
                problems.append(f"{key}: holds non-finite values")
    if problems:
        raise ZooError(f"{path} does not fit model {name!r}: " + "; ".join(problems))
    for key, var in expected.items():
        var[...] = jax.numpy.asarray(tensors[key])
    return model
