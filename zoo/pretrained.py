"""Pretrained files: `model.safetensors` (weights by attribute path) + `config.json` (name, args).

Loading never runs anything named by the files: `config.json` may only hold a registry name and
plain JSON arguments (no `_target_` or other `_`-keys), the model is rebuilt through the registry by
that name, and the weights are plain tensors (safetensors, no pickle) checked against the rebuilt
model's names, shapes and dtypes before any of them is used.
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
from zoo.registry import create_model, model_arguments, model_settings, model_spec

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1
_CONFIG_KEYS = {"format_version", "model", "kwargs"}


def _weights(model: nnx.Module) -> dict[str, nnx.Variable]:
    """Saved variables keyed by their dotted attribute path (`middle.inner.kernel`)."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    return {".".join(map(str, path)): var for path, var in nnx.to_flat_state(state)}


def save_pretrained(model: nnx.Module, directory: str | os.PathLike) -> Path:
    """Write `model` to `directory` as `model.safetensors` + `config.json`.

    The files are written next to `directory` and moved into place whole, so no reader ever sees
    half-written files. An existing `directory` is replaced only if it holds nothing but these two
    files (a previous save); anything else there is refused rather than deleted.
    """
    name, kwargs = model_spec(model)
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise ZooError(
                f"cannot save {name!r}: argument {key}={value!r} is not a JSON number, string, "
                "bool, null or list of them"
            )
    directory = Path(directory).absolute()
    if directory.exists() and (
        not directory.is_dir() or {p.name for p in directory.iterdir()} - {WEIGHTS, CONFIG}
    ):
        raise ZooError(f"{directory}: exists and is not a pretrained directory; not replacing it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: np.asarray(jax.device_get(var[...])) for key, var in _weights(model).items()}
    config = {"format_version": FORMAT_VERSION, "model": name, "kwargs": kwargs}
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old = staging.with_name(staging.name + ".old")
    try:
        save_file(tensors, str(staging / WEIGHTS))
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not directory.exists():
            old.rename(directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return directory


def read_config(directory: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The registered model name and plain constructor arguments from `config.json`, checked."""
    path = Path(directory) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file (not a pretrained directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{path}: unreadable config ({err})") from None
    if not isinstance(config, dict):
        raise ZooError(f"{path}: expected a JSON object with 'model' and 'kwargs'")
    kwargs = config.get("kwargs")
    if "_target_" in config or (isinstance(kwargs, dict) and "_target_" in kwargs):
        raise ZooError(
            f"{path}: names a _target_; a pretrained config names a registered model, never code"
        )
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ZooError(f"{path}: unexpected keys {unknown} (allowed: {sorted(_CONFIG_KEYS)})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ZooError(
            f"{path}: format_version={config.get('format_version')!r}, "
            f"this zoo reads {FORMAT_VERSION}"
        )
    name = config.get("model")
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        raise ZooError(f"{path}: expected 'model' (a name) and 'kwargs' (an object)")
    for key, value in kwargs.items():
        if key.startswith("_") or key == "rngs" or not _is_plain(value):
            raise ZooError(f"{path}: argument {key}={value!r} is not allowed in a pretrained file")
    try:
        model_arguments(name, kwargs)  # unregistered names and bad values fail before building
    except ZooError as err:
        raise ZooError(f"{path}: {err}") from None
    return name, kwargs


def _with_param_dtype(name: str, kwargs: dict[str, Any], dtype: str) -> dict[str, Any]:
    """`kwargs` with `param_dtype=dtype` if model `name` has that setting; ZooError for a dtype
    that is not a floating-point type."""
    try:
        floating = jax.numpy.issubdtype(jax.numpy.dtype(dtype), jax.numpy.floating)
    except TypeError:
        floating = False
    if not floating:
        raise ZooError(f"from_pretrained(dtype={dtype!r}): not a floating-point dtype")
    if any(s.name == "param_dtype" for s in model_settings(name)):
        return kwargs | {"param_dtype": str(jax.numpy.dtype(dtype))}
    return kwargs


def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(map(_is_plain, value))
    return value is None or isinstance(value, bool | int | float | str)


def from_pretrained(directory: str | os.PathLike, dtype: str | None = None) -> nnx.Module:
    """Rebuild the model saved in `directory` through the registry and load its weights; it
    comes back in eval mode (dropout off): call `model.train()` to fine-tune.

    `dtype` (e.g. "float32", "bfloat16") casts every floating tensor of the file to it on load,
    and rebuilds the model with `param_dtype=dtype` where it has that setting; without it the
    tensors must have the dtypes the saved config builds.

    Every missing, unexpected, mis-shaped or mis-typed tensor is reported in one ZooError, checked
    against the model's abstract shapes before any parameter is allocated.
    """
    directory = Path(directory)
    name, kwargs = read_config(directory)
    if dtype is not None:
        kwargs = _with_param_dtype(name, kwargs, dtype)

    def build() -> nnx.Module:
        return create_model(name, rngs=nnx.Rngs(0), **kwargs)

    try:
        expected = {k: v.get_value() for k, v in _weights(nnx.eval_shape(build)).items()}
    except (TypeError, ValueError) as err:
        raise ZooError(f"{directory / CONFIG}: cannot build model {name!r}: {err}") from None
    path = directory / WEIGHTS
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file") from None
    except (OSError, SafetensorError) as err:
        raise ZooError(f"{path}: unreadable weights ({err})") from None
    if dtype is not None:
        tensors = {
            k: v.astype(dtype) if jax.numpy.issubdtype(v.dtype, jax.numpy.floating) else v
            for k, v in tensors.items()
        }

    problems = [f"missing tensor {k}" for k in expected if k not in tensors]
    problems += [f"unexpected tensor {k}" for k in tensors if k not in expected]
    for key, want in expected.items():
        got = tensors.get(key)
        if got is None:
            continue
        if got.shape != want.shape or got.dtype != want.dtype:
            problems.append(
                f"{key}: file has {got.dtype}{list(got.shape)}, "
                f"model wants {want.dtype}{list(want.shape)}"
            )
        elif not bool(jax.numpy.isfinite(got).all()):
            problems.append(f"{key}: holds non-finite values")
    if problems:
        raise ZooError(f"{path} does not fit model {name!r}: " + "; ".join(problems))
    model = build()
    for key, var in _weights(model).items():
        var[...] = jax.numpy.asarray(tensors[key])
    model.eval()
    return model
