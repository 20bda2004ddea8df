"""The pretrained format: a directory of `model.safetensors` (weights by attribute path) and
`config.json` (the registry name and plain constructor arguments), read as if hostile.

Loading never runs anything named by the files: `config.json` may only hold a registry name and
plain JSON arguments (no `_target_` or other `_`-keys), a model is rebuilt through the registry by
that name, and the weights are plain tensors (safetensors, no pickle) whose header is checked
before any of them is read. Both files are read defensively (`zoo.untrusted`): regular files only
(not a FIFO, not a symlink to `/dev/zero`), sizes and the safetensors header checked before
anything is allocated, JSON nesting and list lengths bounded; each problem is one ZooError line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from zoo.errors import ZooError
from zoo.models.registry import create_model, model_arguments
from zoo.untrusted import open_regular, parse_json, read_bounded

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1
NOT_PRETRAINED = "no such file (not a pretrained directory?)"
_CONFIG_KEYS = {"format_version", "model", "kwargs"}

# Limits for files that may be hostile; generous for any real model.
MAX_CONFIG_BYTES = 1 << 20
MAX_JSON_DEPTH = 16  # a config.json is 3 levels deep: {kwargs: {widths: [...]}}
MAX_CONFIG_ITEMS = 256  # entries in one list or object of config.json (e.g. MLP widths)
MAX_HEADER_BYTES = 16 << 20  # the safetensors JSON header
MAX_TENSORS = 100_000
MAX_DIMS = 16
# A tensor's size with each zero dimension taken as 1: an empty tensor checks its data size no
# more, but numpy still refuses a shape whose other dimensions multiply past what it can index.
MAX_TENSOR_BYTES = 1 << 48
# safetensors dtype names -> numpy dtypes (bfloat16 is ml_dtypes', which JAX brings)
_DTYPES = {
    "BOOL": np.dtype(bool),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(jnp.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
}


def read_config(directory: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The registered model name and plain constructor arguments from `config.json`, checked."""
    path = Path(directory) / CONFIG
    data = read_bounded(path, MAX_CONFIG_BYTES, "pretrained config", NOT_PRETRAINED)
    config = parse_json(data, path, "config", MAX_CONFIG_ITEMS, MAX_JSON_DEPTH)
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
        if key.startswith("_") or key == "rngs" or not is_plain(value):
            raise ZooError(f"{path}: argument {key}={value!r} is not allowed in a pretrained file")
    try:
        model_arguments(name, kwargs)  # unregistered names and bad values fail before building
    except ZooError as err:
        raise ZooError(f"{path}: {err}") from None
    return name, kwargs


def is_plain(value: Any) -> bool:
    if isinstance(value, dict):  # a mapping setting (llama's rope_scaling); never a `_target_`
        return all(
            isinstance(k, str) and not k.startswith("_") and is_plain(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(map(is_plain, value))
    return value is None or isinstance(value, bool | int | float | str)


def tensor_layout(directory: str | os.PathLike) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of each tensor in `model.safetensors`, by state path
    (`middle/inner/kernel`), read from its header alone and checked against the file's size."""
    path = Path(directory) / WEIGHTS
    layout = {}
    for key, info in safetensors_header(path, NOT_PRETRAINED).items():
        state_path = key.replace(".", "/")
        if state_path in layout:
            raise ZooError(f"{path}: two tensors have the path {state_path!r}")
        layout[state_path] = info
    return layout


def safetensors_header(
    path: Path, missing: str = "no such file"
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of each tensor of the safetensors file `path`, by its name in the file,
    from the header alone, each checked to lie inside the file (a truncated file is refused)."""
    with open_regular(path, missing) as file:
        size = os.fstat(file.fileno()).st_size
        if size < 8:
            raise ZooError(f"{path}: unreadable weights (a file of {size} bytes is no safetensors)")
        length = int.from_bytes(file.read(8), "little")
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise ZooError(
                f"{path}: unreadable weights (a header of {length} bytes in a file of {size} "
                f"bytes; at most {MAX_HEADER_BYTES} are read)"
            )
        header = parse_json(file.read(length), path, "weights", MAX_TENSORS, MAX_JSON_DEPTH)
    if not isinstance(header, dict):
        raise ZooError(f"{path}: unreadable weights (the header is not a JSON object)")
    header.pop("__metadata__", None)
    layout, data_bytes = {}, size - 8 - length
    for key, entry in header.items():
        info = _tensor_info(entry, data_bytes)
        if info is None:
            raise ZooError(f"{path}: unreadable weights (bad header entry for {key!r})")
        nonzero = math.prod(d for d in info.shape if d) * np.dtype(info.dtype).itemsize
        if nonzero > MAX_TENSOR_BYTES:
            raise ZooError(
                f"{path}: unreadable weights ({key!r} has shape {list(info.shape)}: its nonzero "
                f"dimensions make over 2^{MAX_TENSOR_BYTES.bit_length() - 1} bytes)"
            )
        layout[key] = info
    return layout


def _tensor_info(entry: Any, data_bytes: int) -> jax.ShapeDtypeStruct | None:
    """The shape and dtype of one safetensors header entry, or None if it is malformed or its
    data does not lie inside the file."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return None
    dtype, shape, offsets = _DTYPES.get(entry["dtype"]), entry["shape"], entry["data_offsets"]
    plain_ints = [isinstance(v, int) and not isinstance(v, bool) for v in [*shape, *offsets]]
    if dtype is None or len(shape) > MAX_DIMS or len(offsets) != 2 or not all(plain_ints):
        return None
    begin, end = offsets
    if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_bytes:
        return None
    if math.prod(shape) * dtype.itemsize != end - begin:
        return None
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def read_tensors(directory: str | os.PathLike, paths: Iterable[str]) -> dict[str, np.ndarray]:
    """The tensors at state `paths` (as `tensor_layout` names them) from `model.safetensors`."""
    path = Path(directory) / WEIGHTS
    try:
        with safe_open(str(path), framework="np") as file:
            return {p: file.get_tensor(p.replace("/", ".")) for p in paths}
    except (OSError, SafetensorError) as err:
        raise ZooError(f"{path}: unreadable weights ({err})") from None


def abstract_model(directory: str | os.PathLike, **overrides: Any) -> tuple[str, dict, nnx.Module]:
    """The registry name, constructor arguments (config.json's, then `overrides`) and the
    abstract model (shapes only, nothing allocated) of the model saved in `directory`."""
    name, kwargs = read_config(directory)
    kwargs = {**kwargs, **overrides}
    try:
        model = nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))
    except (TypeError, ValueError) as err:
        raise ZooError(f"{Path(directory) / CONFIG}: cannot build model {name!r}: {err}") from None
    return name, kwargs, model
