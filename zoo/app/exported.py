"""An exported model back as a callable: `zoo.load_exported(directory)`.

The directory zoo-export wrote holds `model.stablehlo` (jax.export's serialized StableHLO, the
weights inside) and `export.json` (its input and output signature and the run's preprocessing).
Loading needs only JAX: no model class is built and nothing in the files names Python code; the
artifact is a computation, which runs on the platforms it was exported for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.memory import require_memory
from zoo.untrusted import open_regular, parse_json, read_bounded

EXPORT_JSON = "export.json"
STABLEHLO = "model.stablehlo"
ONNX = "model.onnx"
MAX_EXPORT_JSON_BYTES = 64 << 20  # the mean and std of up to millions of features


class ExportedModel:
    """A model exported by zoo-export: `model(x)` runs the artifact on a batch `x` (any number of
    rows; the shapes `signature` gives), `model.preprocess(rows)` prepares raw rows as the run
    prepared its data (standardization), `model.meta` is export.json."""

    def __init__(self, directory: Path, meta: dict[str, Any], exported: Any) -> None:
        self.directory, self.meta, self._exported = directory, meta, exported
        standardize = (meta.get("preprocessing") or {}).get("standardize")
        self._mean = self._std = None
        if standardize:
            self._mean = np.asarray(standardize["mean"], np.float32)
            self._std = np.asarray(standardize["std"], np.float32)

    @property
    def signature(self) -> dict[str, Any]:
        """`inputs` and `outputs`: name, shape (`batch`, `length`: any size) and dtype each."""
        return {"inputs": self.meta["inputs"], "outputs": self.meta["outputs"]}

    def preprocess(self, rows: Any) -> np.ndarray:
        """Raw rows as the model takes them: float32 `(rows - mean) / std` for a run trained
        with data.standardize, int32 token ids for a token model, else float32 as they are."""
        if self.meta["inputs"][0]["dtype"] == "int32":
            return np.asarray(rows).astype(np.int32)
        x = np.asarray(rows, dtype=np.float32)
        return (x - self._mean) / self._std if self._mean is not None else x

    def __call__(self, x: Any) -> Any:
        return self._exported.call(x)

    def __repr__(self) -> str:
        return f"ExportedModel({self.directory}, {self.meta.get('model')!r})"


def read_export_json(directory: Path) -> dict[str, Any]:
    """export.json of `directory`, read as a hostile file; a ZooError if it is not one."""
    path = directory / EXPORT_JSON
    data = read_bounded(
        path, MAX_EXPORT_JSON_BYTES, "export.json", "no such file (not an export directory?)"
    )
    meta = parse_json(data, path, "export.json", max_items=1 << 24, max_depth=8)
    if not isinstance(meta, dict) or not isinstance(meta.get("inputs"), list):
        raise ZooError(f"{path}: not a zoo export's export.json (no inputs)")
    return meta


def load_exported(directory: str | os.PathLike) -> ExportedModel:
    """The StableHLO model zoo-export wrote to `directory`, as a callable.

    Args:
        directory: an export directory (`model.stablehlo` + `export.json`).

    Returns:
        An ExportedModel: call it on a batch; `preprocess` prepares raw rows.

    Raises:
        ZooError: a missing or damaged file, or an ONNX export (run that with onnxruntime).
    """
    import jax

    directory = Path(directory)
    if not directory.is_dir():
        raise ZooError(f"{directory}: no such directory (an export directory)")
    meta = read_export_json(directory)
    if meta.get("format") != "stablehlo":
        raise ZooError(
            f"{directory}: a format={meta.get('format')} export; load_exported runs StableHLO "
            "(run model.onnx with onnxruntime)"
        )
    with open_regular(directory / STABLEHLO) as file:
        require_memory(os.fstat(file.fileno()).st_size, f"{directory / STABLEHLO}")
        data = file.read()
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as err:  # flatbuffers and MLIR raise many types for damaged bytes
        gist = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ZooError(
            f"{directory / STABLEHLO}: not a readable StableHLO artifact ({gist})"
        ) from None
    return ExportedModel(directory, meta, exported)
