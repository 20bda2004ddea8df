"""zoo-export (python export.py): a saved model as a file that runs without the zoo.

`format=stablehlo`: `jax.export` serializes the model's forward pass, weights included as
constants, to StableHLO for `platforms` (cpu and cuda by default) with a symbolic batch dimension
(and a symbolic sequence length, up to max_len, for token models): one artifact takes any number
of rows. `jax.export.deserialize` runs it with nothing but JAX installed; `zoo.load_exported`
wraps that. `format=onnx`: jax2onnx (the `onnx` extra) converts the same function, for
onnxruntime. Beside the artifact, `export.json` gives its input and output signature and the
preprocessing the run's data had (mean and std), which the artifact leaves to its caller. The
model is in eval mode (dropout off). The directory is written whole beside `out` and renamed into
place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.app.exported import EXPORT_JSON, ONNX, STABLEHLO
from zoo.app.predict_source import TOKENS, Served, open_served
from zoo.config.app_settings import EXPORT_PLATFORMS
from zoo.errors import ZooError
from zoo.files import follow_umask, replacing_directory

ARTIFACTS = {"stablehlo": STABLEHLO, "onnx": ONNX}


def export(cfg: Any) -> Path:
    """Export `cfg.source`'s model to the directory `cfg.out`.

    Args:
        cfg: the export settings (`source`, `out`, `format`, `platforms`, `overwrite`).

    Returns:
        The export directory.

    Raises:
        ZooError: a bad source, output directory or setting, or a model the format cannot
            express (one line); nothing is written.
    """
    out = _check_out(cfg.out, cfg.overwrite)
    platforms = _check_platforms(list(cfg.platforms))
    served = open_served(cfg.source)
    onnx = cfg.format == "onnx"
    artifact = onnx_bytes(served) if onnx else stablehlo_bytes(served, platforms)
    meta = export_meta(served, cfg.format, ["cpu"] if onnx else platforms)
    _write(out, {ARTIFACTS[cfg.format]: artifact, EXPORT_JSON: _json_bytes(meta)})
    print(f"exported {served.name} ({cfg.format}) to {out}")
    return out


def _check_out(out: str | None, overwrite: bool) -> Path:
    if out is None:
        raise ZooError("out is required: the directory to write the export to")
    path = Path(out).absolute()
    if not path.parent.is_dir():
        raise ZooError(f"out={out}: its directory {path.parent} does not exist")
    if path.exists():
        if not path.is_dir() or {p.name for p in path.iterdir()} - {
            *ARTIFACTS.values(),
            EXPORT_JSON,
        }:
            raise ZooError(f"out={out} exists and is not an export directory; not replacing it")
        if not overwrite:
            raise ZooError(f"out={out} exists; set overwrite=true to replace it")
    return path


def _check_platforms(platforms: list[str]) -> list[str]:
    for platform in platforms:
        if platform not in EXPORT_PLATFORMS:
            raise ZooError(
                f"platforms: {platform!r} is unknown; valid: {', '.join(EXPORT_PLATFORMS)}"
            )
    if len(set(platforms)) != len(platforms):
        raise ZooError(f"platforms={platforms} names a platform twice")
    return platforms


def forward_function(served: Served) -> Any:
    """The model's forward pass as a function of the input batch alone, its weights closed over
    (they become constants of the exported program)."""
    graphdef, state = nnx.split(served.model)

    def forward(x: jax.Array) -> jax.Array:
        # fresh Variables at this trace's level around the same arrays (nnx refuses the model's
        # own inside a transform such as the blocks' scan)
        return nnx.merge(graphdef, jax.tree.map(lambda a: a, state))(x)

    return forward


def input_spec(served: Served) -> jax.ShapeDtypeStruct:
    """The input with a symbolic batch `batch` (and for tokens a symbolic `length` <= max_len)."""
    if served.kind == TOKENS:
        batch, length = jax.export.symbolic_shape(
            "batch, length", constraints=[f"length <= {served.max_len}"]
        )
        return jax.ShapeDtypeStruct((batch, length), jnp.int32)
    (batch,) = jax.export.symbolic_shape("batch")
    return jax.ShapeDtypeStruct((batch, served.width), jnp.float32)


def stablehlo_bytes(served: Served, platforms: list[str]) -> bytes:
    """The serialized `jax.export` artifact of the model's forward pass."""
    try:
        exported = jax.export.export(jax.jit(forward_function(served)), platforms=platforms)(
            input_spec(served)
        )
    except Exception as err:  # shape polymorphism refuses some programs: say which model
        gist = str(err).strip().splitlines()[0][:200]
        raise ZooError(f"model {served.name!r} cannot be exported to StableHLO: {gist}") from None
    return bytes(exported.serialize())


def onnx_bytes(served: Served) -> bytes:
    """The model's forward pass as an ONNX model (jax2onnx), with a symbolic batch dimension."""
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise ZooError("format=onnx needs jax2onnx: pip install 'zoo[onnx]'") from None
    spec = input_spec(served)
    shape = (
        ("batch", served.width or served.max_len)
        if served.kind == TOKENS
        else ("batch", served.width)
    )
    try:
        model = to_onnx(forward_function(served), [jax.ShapeDtypeStruct(shape, spec.dtype)])
    except Exception as err:  # a primitive jax2onnx has no rule for, among others
        gist = str(err).strip().splitlines()[0][:200]
        raise ZooError(f"model {served.name!r} cannot be converted to ONNX: {gist}") from None
    return model.SerializeToString()


def export_meta(served: Served, fmt: str, platforms: list[str]) -> dict[str, Any]:
    """export.json: what the artifact takes and gives, and how raw rows are prepared for it."""
    dtype = jnp.int32 if served.kind == TOKENS else jnp.float32
    width = served.width or 1
    out = jax.eval_shape(forward_function(served), jax.ShapeDtypeStruct((1, width), dtype))
    if served.kind == TOKENS:
        inputs = {"name": "tokens", "shape": ["batch", "length"], "dtype": "int32"}
        outputs = {"shape": ["batch", "length", out.shape[-1]]}
        inputs["max_len"] = served.max_len
    else:
        inputs = {"name": "x", "shape": ["batch", served.width], "dtype": "float32"}
        outputs = {"shape": ["batch", *out.shape[1:]]}
    kind = "logits" if served.task == "classification" else "values"
    outputs = {"name": kind, **outputs, "dtype": str(np.dtype(out.dtype))}
    preprocessing: dict[str, Any] = {}
    if served.mean is not None:
        preprocessing["standardize"] = {"mean": served.mean.tolist(), "std": served.std.tolist()}
    if served.columns is not None:
        preprocessing["columns"] = served.columns
    preprocessing |= served.extra  # a data family's own (a tokenizer file)
    return {
        "format": fmt,
        "file": ARTIFACTS[fmt],
        "model": served.name,
        "kwargs": served.kwargs,
        "task": served.task,
        "num_classes": served.num_classes,
        "platforms": platforms,
        "inputs": [inputs],
        "outputs": [outputs],
        "preprocessing": preprocessing,
        "jax_version": jax.__version__,
    }


def _json_bytes(meta: dict[str, Any]) -> bytes:
    return (json.dumps(meta, indent=2) + "\n").encode()


def _write(out: Path, files: dict[str, bytes]) -> None:
    """`files` into a staging directory beside `out`, then renamed onto it whole."""
    with replacing_directory(out) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
            follow_umask(staging / name)
