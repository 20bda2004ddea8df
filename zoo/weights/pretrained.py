"""Pretrained files, as transformers and timm keep them: `save_pretrained(model, directory)` and
`from_pretrained(directory)`, in the format of zoo/weights/format.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from zoo.errors import ZooError
from zoo.files import follow_umask, staging_directory
from zoo.models.registry import create_model, model_settings, model_spec
from zoo.weights.format import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    abstract_model,
    is_plain,
    read_config,
)

if TYPE_CHECKING:
    from zoo.weights.load import LoadReport


def _weights(model: nnx.Module) -> dict[str, nnx.Variable]:
    """Saved variables keyed by their dotted attribute path (`middle.inner.kernel`)."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    return {".".join(map(str, path)): var for path, var in nnx.to_flat_state(state)}


def save_pretrained(model: nnx.Module, directory: str | os.PathLike) -> Path:
    """Write `model` to `directory` as `model.safetensors` + `config.json`.

    The files are written next to `directory` and moved into place whole, so no reader ever sees
    half-written files.

    Args:
        model: a model built through the registry (`zoo.create_model`, or a registered class).
        directory: where to write; an existing one is replaced only if it holds nothing but these
            two files (a previous save).

    Returns:
        The directory, absolute.

    Raises:
        ZooError: the model is not registered, an argument is not plain JSON, or the directory
            holds other files.
    """
    name, kwargs = model_spec(model)
    for key, value in kwargs.items():
        if not is_plain(value):
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
    staging = staging_directory(directory)
    old = staging.with_name(staging.name + ".old")
    try:
        save_file(tensors, str(staging / WEIGHTS))
        follow_umask(staging / WEIGHTS)  # safetensors writes 0600 whatever the umask
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


def _abstract_left(model: nnx.Module) -> bool:
    """Whether any array of `model` is still a shape only (`jax.ShapeDtypeStruct`)."""
    for _, node in nnx.iter_graph(model):
        value = node.get_value() if isinstance(node, nnx.Variable) else node
        if isinstance(value, jax.ShapeDtypeStruct):
            return True
    return False


def from_pretrained(
    directory: str | os.PathLike,
    *,
    strict: bool = True,
    output_loading_info: bool = False,
    dtype: str | None = None,
    **overrides: Any,
) -> nnx.Module | tuple[nnx.Module, LoadReport]:
    """Rebuild the model saved in `directory` through the registry and load its weights; it
    comes back in eval mode (dropout off): call `model.train()` to fine-tune.

    `dtype` (e.g. "float32", "bfloat16") casts every floating tensor of the file to it on load,
    and rebuilds the model with `param_dtype=dtype` where it has that setting; without it the
    tensors must have the dtypes the saved config builds.

    Args:
        directory: a pretrained directory (`model.safetensors` + `config.json`).
        strict: every missing, unexpected, mis-shaped or mis-typed tensor is an error, found from
            the model's abstract shapes before any parameter is allocated; without it the parts
            that do not fit stay freshly initialised (from `nnx.Rngs(0)`).
        output_loading_info: also return the LoadReport.
        dtype: cast every floating tensor to this dtype (see above).
        **overrides: constructor arguments over the saved ones (`out_features=5`: a new head).

    Returns:
        The model, or `(model, report)` with `output_loading_info`.

    Raises:
        ZooError: a missing, damaged or hostile file (one line), or with `strict` every tensor
            that does not fit.
    """
    from zoo.weights.load import load_weights, plan_load
    from zoo.weights.published_vision import abstract as abstract_published
    from zoo.weights.published_vision import read_published
    from zoo.weights.sources import PretrainedSource, PublishedSource

    directory = Path(directory)
    published = read_published(directory)  # timm or Hugging Face: converted by its table
    if dtype is not None:
        name = published.name if published else read_config(directory)[0]
        overrides = _with_param_dtype(name, overrides, dtype)
    if published is not None:
        name, kwargs = published.name, published.kwargs | overrides
        abstract = abstract_published(name, kwargs, directory / CONFIG)
        source = PublishedSource(published, abstract)
    else:
        name, kwargs, abstract = abstract_model(directory, **overrides)
        source = PretrainedSource(directory)
    cast = dtype is not None
    plan_load(abstract, source, strict=strict, cast=cast)  # a strict mismatch: before allocating
    model = None
    if strict and not nnx.state(abstract, nnx.RngState):
        # The file gives every variable: fill the abstract model, nothing drawn (nor compiled)
        # first, unless the model keeps arrays outside its variables.
        report = load_weights(abstract, source, strict=strict, cast=cast)
        model = abstract if not _abstract_left(abstract) else None
    if model is None:
        try:  # one jitted program, not one per initialiser (the same numbers: layers.kept_apart)
            model = nnx.jit(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))()
        except (TypeError, ValueError) as err:
            raise ZooError(f"{directory / CONFIG}: cannot build model {name!r}: {err}") from None
        report = load_weights(model, source, strict=strict, cast=cast)
    model.eval()
    return (model, report) if output_loading_info else model
