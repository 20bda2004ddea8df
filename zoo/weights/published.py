"""Published checkpoints (Hugging Face's `config.json` + `model.safetensors`, or a sharded
`model.safetensors.index.json`), read and written through each family's conversion table.

`CONVERSIONS` maps what a published `config.json` names (`model_type` of transformers,
`architecture` of timm) to a family's `Conversion` (zoo.models.conversion): the zoo model it
builds, its rows (published name <-> state path, transform) and its config both ways. The table
is a plain mapping: a family adds its entry at the end. Nothing read from a file picks code
beyond a key of this table.

One reader applies any table: the layout (state path -> shape and dtype, after the transforms)
comes from the safetensors headers alone, each checked against its file's size, so a load is
planned, and every difference reported, before a tensor is read; tensors are then read one at a
time from memory-mapped files. The same table read backwards writes the published layout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from zoo.errors import ZooError
from zoo.models.conversion import Conversion, Row
from zoo.models.gpt2.convert import CONVERSION as GPT2
from zoo.models.llama.convert import CONVERSION as LLAMA
from zoo.models.registry import create_model, model_arguments, model_spec
from zoo.paths import flat_variables
from zoo.untrusted import parse_json, read_bounded
from zoo.weights.format import (
    CONFIG,
    MAX_CONFIG_BYTES,
    MAX_JSON_DEPTH,
    MAX_TENSORS,
    WEIGHTS,
    safetensors_header,
)

INDEX = "model.safetensors.index.json"
MAX_INDEX_BYTES = 64 << 20  # a weight map of 100k tensor names
MAX_CONFIG_ITEMS = 4096  # entries of one list or object of a published config.json

# config.json's `model_type` (transformers) or `architecture` (timm) -> the family's conversion
CONVERSIONS: dict[str, Conversion] = {
    "gpt2": GPT2,
    "llama": LLAMA,
}


def published_config(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The published `config.json` of `directory`, or None when the directory is not a published
    checkpoint (no config.json, or the zoo's own format)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        return None
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES, "config")
        config = parse_json(data, path, "config", MAX_CONFIG_ITEMS, MAX_JSON_DEPTH)
    except ZooError:  # not readable as a published config: the zoo's own reader says why
        return None
    if not isinstance(config, dict) or "format_version" in config:
        return None
    if "model_type" not in config and "architecture" not in config:
        return None
    return config


def is_published(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a published decoder checkpoint: a config.json (not the zoo's
    format) whose `model_type` this table converts. Any other published config is
    zoo.weights.published_vision's to read, or to refuse."""
    config = published_config(directory)
    return config is not None and config.get("model_type") in CONVERSIONS


def conversion_of(directory: str | os.PathLike, config: dict[str, Any]) -> Conversion:
    """The conversion the config's `model_type` (or `architecture`) names; one line if none."""
    key = config.get("model_type", config.get("architecture"))
    what = "model_type" if "model_type" in config else "architecture"
    if not isinstance(key, str) or key not in CONVERSIONS:
        raise ZooError(
            f"{Path(directory) / CONFIG}: unknown {what} {key!r} (the zoo reads: "
            f"{', '.join(sorted(CONVERSIONS))})"
        )
    return CONVERSIONS[key]


def published_settings(directory: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The zoo model name and its checked settings for the published checkpoint `directory`."""
    config = published_config(directory)
    if config is None:
        raise ZooError(f"{Path(directory) / CONFIG}: not a published config.json")
    conversion = conversion_of(directory, config)
    try:
        kwargs = conversion.settings(config)
        model_arguments(conversion.model, kwargs)
    except ZooError as err:
        raise ZooError(
            f"{Path(directory) / CONFIG}: {err}".replace(": config.json:", ":")
        ) from None
    return conversion.model, kwargs


def abstract_published(
    directory: str | os.PathLike, **overrides: Any
) -> tuple[str, dict[str, Any], nnx.Module]:
    """The model name, settings (config.json's, then `overrides`) and abstract model (shapes
    only) of the published checkpoint `directory`."""
    name, kwargs = published_settings(directory)
    kwargs = {**kwargs, **overrides}
    try:
        model = nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))
    except (TypeError, ValueError) as err:
        raise ZooError(f"{Path(directory) / CONFIG}: cannot build model {name!r}: {err}") from None
    return name, kwargs, model


class PublishedCheckpoint:
    """The tensors of a published checkpoint directory by zoo state path, converted by its
    family's rows. Tensors no row takes keep their published name (`lm_head.bias`): a load
    reports them as unexpected."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        config = published_config(self.directory)
        if config is None:
            raise ZooError(f"{self.directory / CONFIG}: not a published config.json")
        self.conversion = conversion_of(self.directory, config)
        published_settings(self.directory)  # a config the family cannot build is one line here
        self.files, headers = _weight_files(self.directory)
        self._plan: dict[str, tuple[Row, list[str]]] = {}  # state path -> (row, names by layer)
        self.layout: dict[str, jax.ShapeDtypeStruct] = {}
        self.stacked: frozenset[str] = frozenset()
        self._build(headers)

    def __str__(self) -> str:
        return str(self.directory)

    def _build(self, headers: dict[str, jax.ShapeDtypeStruct]) -> None:
        names = _current_names(headers, self.conversion)
        taken: set[str] = set()
        stacked = set()
        for row in self.conversion.rows:
            if "{layer}" not in row.source:
                if row.source in names:
                    info = headers[names[row.source]]
                    self._plan[row.target] = (row, [row.source])
                    self.layout[row.target] = _transformed(info, row.transform)
                    taken.add(row.source)
                continue
            pattern = re.compile(re.escape(row.source).replace(r"\{layer\}", r"(\d+)") + "$")
            layers = {
                int(m[1]): n for n in names if (m := pattern.match(n)) and str(int(m[1])) == m[1]
            }
            if not layers:
                continue
            count = max(layers) + 1
            absent = [row.source.format(layer=i) for i in range(count) if i not in layers]
            if absent:
                raise ZooError(
                    f"{self.directory}: missing tensor {absent[0]} (a checkpoint of "
                    f"{count} layers has {row.source.format(layer=count - 1)})"
                )
            infos = [headers[names[layers[i]]] for i in range(count)]
            if any((i.shape, i.dtype) != (infos[0].shape, infos[0].dtype) for i in infos):
                shapes = sorted({f"{np.dtype(i.dtype)}{list(i.shape)}" for i in infos})
                raise ZooError(
                    f"{self.directory}: the layers of {row.source} differ in shape "
                    f"or dtype ({', '.join(shapes)})"
                )
            one = _transformed(infos[0], row.transform)
            self._plan[row.target] = (row, [layers[i] for i in range(count)])
            self.layout[row.target] = jax.ShapeDtypeStruct((count, *one.shape), one.dtype)
            stacked.add(row.target)
            taken.update(layers.values())
        for name in sorted(set(names) - taken):
            self.layout[name] = headers[names[name]]  # unexpected, under its own name
            self._plan[name] = (Row(name, name), [name])
        self.stacked = frozenset(stacked)
        self._names = names

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        """The converted tensors at state `paths`, read one file tensor at a time."""
        result = {}
        handles: dict[Path, Any] = {}
        try:
            for path in paths:
                row, names = self._plan[path]
                arrays = [self._read_one(self._names[n], handles) for n in names]
                arrays = [_apply(a, row.transform) for a in arrays]
                stacked = "{layer}" in row.source
                result[path] = np.stack(arrays) if stacked else arrays[0]
        except (OSError, SafetensorError) as err:
            raise ZooError(f"{self.directory}: unreadable weights ({err})") from None
        finally:
            handles.clear()
        return result

    def _read_one(self, name: str, handles: dict[Path, Any]) -> np.ndarray:
        file = self.files[name]
        if file not in handles:
            handles[file] = safe_open(str(file), framework="np")
        return handles[file].get_tensor(name)


def _weight_files(directory: Path) -> tuple[dict[str, Path], dict[str, jax.ShapeDtypeStruct]]:
    """Each tensor's file and header entry: `model.safetensors`, or the shards the index names
    (each shard's header checked against its size; every name the index lists must be in it)."""
    single, index = directory / WEIGHTS, directory / INDEX
    if not index.exists() or single.exists():
        missing = f"no such file (nor {INDEX}): no weights in this checkpoint"
        return _files_of(single, safetensors_header(single, missing))
    data = read_bounded(index, MAX_INDEX_BYTES, "safetensors index")
    parsed = parse_json(data, index, "safetensors index", MAX_TENSORS, MAX_JSON_DEPTH)
    weight_map = parsed.get("weight_map") if isinstance(parsed, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ZooError(f"{index}: no weight_map of tensor name -> shard file")
    files, headers = {}, {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise ZooError(f"{index}: shard {shard!r} is not a file name in the directory")
        path = directory / shard
        header = safetensors_header(path, f"no such file (a shard {INDEX} names)")
        for name in (n for n, s in weight_map.items() if s == shard):
            if name not in header:
                raise ZooError(f"{path}: has no tensor {name!r} (which {INDEX} puts there)")
            files[name], headers[name] = path, header[name]
    return files, headers


def _files_of(path: Path, header: dict) -> tuple[dict[str, Path], dict]:
    return {name: path for name in header}, header


def _current_names(headers: dict[str, Any], conversion: Conversion) -> dict[str, str]:
    """Each file tensor's current name (the family's aliases applied, ignored ones left out)
    -> its name in the file."""
    ignored = [re.compile(p) for p in conversion.ignored]
    names = {}
    for name in headers:
        if any(p.search(name) for p in ignored):
            continue
        current = name
        for pattern, replacement in conversion.aliases:
            current = re.sub(pattern, replacement, current)
        if current in names:
            raise ZooError(f"two tensors are named {current!r} ({names[current]!r}, {name!r})")
        names[current] = name
    return names


def _transformed(info: jax.ShapeDtypeStruct, transform: str) -> jax.ShapeDtypeStruct:
    if transform == "transpose":
        return jax.ShapeDtypeStruct(tuple(reversed(info.shape)), info.dtype)
    return info


def _apply(array: np.ndarray, transform: str) -> np.ndarray:
    """A row's transform on one tensor (each is its own inverse, so it also writes back)."""
    return array.T if transform == "transpose" else array


def published_tensors(model: nnx.Module) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`model`'s tensors by published name, and its published config.json, by its family's
    conversion (the rows read backwards; per-layer tensors split off the scan axis)."""
    name, kwargs = model_spec(model)
    conversion = next((c for c in CONVERSIONS.values() if c.model == name), None)
    if conversion is None:
        families = sorted({c.model for c in CONVERSIONS.values()})
        raise ZooError(f"model {name!r} has no published layout (families that do: {families})")
    variables = flat_variables(model)
    tensors, used = {}, set()
    for row in conversion.rows:
        if row.target not in variables:
            continue  # e.g. the head of a tied model
        used.add(row.target)
        value = np.asarray(jax.device_get(variables[row.target][...]))
        if "{layer}" in row.source:
            for layer, one in enumerate(value):
                tensors[row.source.format(layer=layer)] = np.ascontiguousarray(
                    _apply(one, row.transform)
                )
        else:
            tensors[row.source] = np.ascontiguousarray(_apply(value, row.transform))
    left = sorted(set(variables) - used)
    if left:
        raise ZooError(f"model {name!r}: no published name for {', '.join(left)}")
    return tensors, conversion.config(kwargs)
