"""zoo-predict (python predict.py): a saved model's predictions on the rows of a file.

The rows are read a chunk of `batch_size` at a time (zoo/app/predict_inputs.py), prepared as the
run prepared its data, and sent through one jitted program per batch-size bucket: full batches
use `batch_size`, and so does the last partial batch, padded with zero rows; an input that is
one short chunk is padded to the next power of two instead. One compiled program per input. While
the device runs one batch the host reads the next. Outputs go out in input order into a
temporary file that replaces `output` only when every row is in (zoo/app/predict_outputs.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from zoo.app.predict_inputs import Rows, open_rows
from zoo.app.predict_outputs import Fields, writer_class
from zoo.app.predict_source import TOKENS, Served, open_served
from zoo.errors import ZooError
from zoo.files import replacing

log = logging.getLogger(__name__)


def bucket(rows: int, batch_size: int, first: bool = True) -> int:
    """The batch a chunk of `rows` is padded to: `batch_size`, the program the full batches
    compiled; but when the whole input is one short chunk (`first`), the next power of two (a
    short file does not run, or compile, a whole batch_size)."""
    if rows >= batch_size or not first:
        return batch_size
    return min(batch_size, 1 << (rows - 1).bit_length())


def output_task(served: Served, task: str) -> str:
    """`task=auto`: the run's task, else raw values (regression) for a model without a run."""
    chosen = served.task if task == "auto" else task
    return chosen or "regression"


def make_forward(served: Served, task: str, top_k: int) -> Any:
    """The jitted function `(state, x) -> {field: array}` of one batch: the model's outputs in
    float32, as values (regression) or as the class (the argmax of the logits), its softmax
    probability and the top_k classes by logit with theirs (classification)."""
    graphdef, state = nnx.split(served.model)

    def forward(state: Any, x: jax.Array) -> dict[str, jax.Array]:
        out = nnx.merge(graphdef, state)(x).astype(jnp.float32)
        if task == "regression":
            return {"value": out[..., 0] if out.shape[-1] == 1 else out}
        log_norm = jax.nn.logsumexp(out, axis=-1, keepdims=True)
        best = out.argmax(-1)  # argmax, not top_k's first: on a CPU top_k is a sort
        logit = jnp.take_along_axis(out, best[..., None], -1)
        fields = {"class": best, "probability": jnp.exp(logit - log_norm)[..., 0]}
        if top_k > 1:
            logits, classes = jax.lax.top_k(out, top_k)
            fields |= {"top_classes": classes, "top_probabilities": jnp.exp(logits - log_norm)}
        return fields

    jitted = jax.jit(forward)
    return lambda x: jitted(state, x)


def check_output(output: str | None, overwrite: bool, inputs: list[str | None]) -> Path:
    """`output` as a path that may be written: a known extension, a directory that exists, not
    an input, and not an existing file unless `overwrite`."""
    if output is None:
        raise ZooError("output is required: the file to write (.csv, .jsonl, .npz or .parquet)")
    path = Path(output)
    if path.is_dir():
        raise ZooError(f"output={output} is a directory; name a file")
    writer_class(path)
    if not path.parent.is_dir():
        raise ZooError(f"output={output}: its directory {path.parent} does not exist")
    if any(i is not None and path.exists() and path.samefile(i) for i in inputs):
        raise ZooError(f"output={output} is the input file; write the predictions elsewhere")
    if path.exists() and not overwrite:
        raise ZooError(f"output={output} exists; set overwrite=true to replace it")
    return path


def predict(cfg: Any) -> dict[str, Any]:
    """Write `cfg.source`'s predictions for the rows of `cfg.input` to `cfg.output`.

    Args:
        cfg: the predict settings (`source`, `input`, `output`, `batch_size`, `top_k`,
            `overwrite`, `task`, `target`), e.g. `zoo.compose([...], app="predict")`.

    Returns:
        `rows` written, and with labels in the input `accuracy` (classification) or `mse`.

    Raises:
        ZooError: a bad source, input row or output path (one line); nothing is written.
    """
    if cfg.input is None:
        raise ZooError("input is required: a .csv or .npz of the rows to predict")
    output = check_output(cfg.output, cfg.overwrite, [cfg.input])
    if not Path(cfg.input).exists():
        raise ZooError(f"input={cfg.input}: no such file")
    served = open_served(cfg.source)
    task = output_task(served, cfg.task)
    if task == "classification":
        classes = _output_width(served)
        served.num_classes = served.num_classes or classes
        if cfg.top_k > classes:
            raise ZooError(f"top_k={cfg.top_k} is more than the model's {classes} classes")
    rows = open_rows(served, cfg.input, cfg.target)
    try:
        return _run(served, rows, task, cfg.top_k, cfg.batch_size, output)
    finally:
        rows.close()


def _output_width(served: Served) -> int:
    width = served.width or 1
    dtype = jnp.int32 if served.kind == TOKENS else jnp.float32
    graphdef, state = nnx.split(served.model)  # merged under the trace: nnx's transforms want it
    out = jax.eval_shape(
        lambda state, x: nnx.merge(graphdef, state)(x),
        state,
        jax.ShapeDtypeStruct((1, width), dtype),
    )
    return int(out.shape[-1])


def _run(
    served: Served, rows: Rows, task: str, top_k: int, batch_size: int, output: Path
) -> dict[str, Any]:
    forward = make_forward(served, task, top_k)
    dtype = np.int32 if served.kind == TOKENS else np.float32
    shapes = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, rows.width), dtype))
    fields: Fields = {k: (s.shape[1:], np.dtype(s.dtype)) for k, s in shapes.items()}
    score = _Score(task)
    written = 0
    bar = tqdm(total=rows.total, unit=rows.unit, unit_scale=True, desc="predict", disable=None)
    with bar, replacing(output) as tmp:
        writer = writer_class(output)(tmp, fields)
        try:
            pending = None  # the batch on the device while the next one is read
            for x, y in rows.batches(batch_size):
                n = len(x)
                size = bucket(n, batch_size, first=pending is None)
                padded = np.zeros((size, *x.shape[1:]), x.dtype) if size > n else None
                if padded is not None:
                    padded[:n] = x
                result = forward(padded if padded is not None else x)
                if pending is not None:
                    written += _finish(writer, pending, written, score)
                pending = (result, n, y)
                bar.update(rows.position() - bar.n)
            if pending is not None:
                written += _finish(writer, pending, written, score)
            if written == 0:
                raise ZooError(f"{rows.path}: no rows to predict")
        finally:
            writer.close()
        bar.update(rows.position() - bar.n)
    message = f"wrote {written} rows to {output}"
    for key, value in score.result().items():  # as eval.py prints its metrics
        message += f"\n{key} = {value:.6g}  (against {rows.labelled!r} of {rows.path})"
    print(message, file=sys.stdout)
    return {"rows": written} | score.result()


def _finish(writer: Any, pending: Any, first: int, score: _Score) -> int:
    result, n, labels = pending
    arrays = {k: np.asarray(v)[:n] for k, v in result.items()}
    writer.write(first, arrays)
    if labels is not None:
        score.add(arrays, labels)
    return n


class _Score:
    """Accuracy (classification) or mean squared error (regression) against the file's labels."""

    def __init__(self, task: str) -> None:
        self.task, self.n, self.total = task, 0, 0.0

    def add(self, arrays: dict[str, np.ndarray], labels: np.ndarray) -> None:
        if self.task == "classification":
            self.total += float((arrays["class"] == labels).sum())
            self.n += labels.size
        else:
            values = arrays["value"].reshape(len(labels), -1)
            self.total += float(((values - labels.reshape(len(labels), -1)) ** 2).sum())
            self.n += values.size

    def result(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"accuracy" if self.task == "classification" else "mse": self.total / self.n}
