"""Pretrained files, as transformers and timm keep them: `save_pretrained(model, directory)` and
`from_pretrained(directory)`, in the format of zoo/weights/format.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from zoo.errors import ZooError
from zoo.files import follow_umask, replacing_directory
from zoo.models.lora import merge_lora
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


def save_pretrained(
    model: nnx.Module, directory: str | os.PathLike, *, format: str = "zoo"
) -> Path:
    """Write `model` to `directory` as `model.safetensors` + `config.json`.

    The files are written next to `directory` and moved into place whole, so no reader ever sees
    half-written files.

    Args:
        model: a model built through the registry (`zoo.create_model`, or a registered class).
        directory: where to write; an existing one is replaced only if it holds nothing but these
            two files (a previous save).
        format: `"zoo"`, the zoo's own (weights by state path, the registry name and
            arguments); `"hf"`, the published layout of the model's family (Hugging Face
            names and config.json, which transformers loads; `gpt2` and `llama`).

    Returns:
        The directory, absolute.

    Raises:
        ZooError: the model is not registered, an argument is not plain JSON, the family has no
            published layout, or the directory holds other files.
    """
    if format not in ("zoo", "hf"):
        raise ZooError(f"save_pretrained(format={format!r}): valid formats are 'zoo' and 'hf'")
    model = merge_lora(model)  # LoRA's adapters folded into the kernels: a plain model
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
    if format == "hf":
        from zoo.weights.published import published_tensors

        tensors, config = published_tensors(model)
        metadata = {"format": "pt"}  # what transformers expects of a safetensors file
    else:
        tensors = {k: np.asarray(jax.device_get(var[...])) for k, var in _weights(model).items()}
        config = {"format_version": FORMAT_VERSION, "model": name, "kwargs": kwargs}
        metadata = None
    directory.parent.mkdir(parents=True, exist_ok=True)
    with replacing_directory(directory) as staging:
        save_file(tensors, str(staging / WEIGHTS), metadata=metadata)
        follow_umask(staging / WEIGHTS)  # safetensors writes 0600 whatever the umask
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _filled(
    abstract: nnx.Module, source: Any, planned: LoadReport, strict: bool, cast: bool
) -> tuple[nnx.Module, LoadReport] | None:
    """The abstract model with every variable loaded from `source` (nothing drawn, nor compiled,
    first) and the load's report; None when the plan leaves any variable to initialise, or the
    model keeps RNG state or arrays outside its variables."""
    from zoo.paths import flat_variables
    from zoo.weights.load import load_weights

    if nnx.state(abstract, nnx.RngState) or set(planned.loaded) != set(flat_variables(abstract)):
        return None
    report = load_weights(abstract, source, strict=strict, cast=cast)
    return None if _abstract_left(abstract) else (abstract, report)


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


def _built(name: str, kwargs: dict[str, Any], directory: Path) -> nnx.Module:
    """The model, initialised in one jitted program rather than one per initialiser (the same
    numbers: zoo.models.layers.kept_apart)."""
    try:
        return nnx.jit(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))()
    except (TypeError, ValueError) as err:
        raise ZooError(f"{directory / CONFIG}: cannot build model {name!r}: {err}") from None


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

    A published checkpoint directory (Hugging Face's `config.json` + `model.safetensors` or a
    sharded `model.safetensors.index.json`; `model_type` gpt2 or llama) is read through its
    family's conversion table (zoo.weights.published); its tensors take the model's
    `param_dtype` (float32 unless `dtype` says otherwise).

    Args:
        directory: a pretrained directory (`model.safetensors` + `config.json`), the zoo's own
            or a published one.
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
    from zoo.weights import published
    from zoo.weights.load import load_weights, plan_load
    from zoo.weights.published_vision import abstract as abstract_vision
    from zoo.weights.published_vision import read_published
    from zoo.weights.sources import PretrainedSource, PublishedSource, VisionSource

    directory = Path(directory)
    if published.is_published(directory):  # transformers' gpt2 or llama
        if dtype is not None:
            family = published.published_settings(directory)[0]
            overrides = _with_param_dtype(family, overrides, dtype)
        name, kwargs, abstract = published.abstract_published(directory, **overrides)
        source = PublishedSource(directory)
        cast = True  # its tensors take the model's param_dtype, as transformers loads them
    else:
        vision = read_published(directory)  # timm or Hugging Face resnet, vit: by its table
        if dtype is not None:
            name = vision.name if vision else read_config(directory)[0]
            overrides = _with_param_dtype(name, overrides, dtype)
        if vision is not None:
            name, kwargs = vision.name, vision.kwargs | overrides
            abstract = abstract_vision(name, kwargs, directory / CONFIG)
            source = VisionSource(vision, abstract)
        else:
            name, kwargs, abstract = abstract_model(directory, **overrides)
            source = PretrainedSource(directory)
        cast = dtype is not None
    planned = plan_load(abstract, source, strict=strict, cast=cast)  # a mismatch: before allocating
    filled = _filled(abstract, source, planned, strict, cast)
    if filled is not None:
        model, report = filled
    else:
        model = _built(name, kwargs, directory)
        report = load_weights(model, source, strict=strict, cast=cast)
    model.eval()
    return (model, report) if output_loading_info else model
