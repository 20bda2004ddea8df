"""A model's parameters as a table: path in the state pytree, shape, dtype, count, and the total."""

from __future__ import annotations

import math
from typing import Any

from flax import nnx

from zoo.reporting.tables import format_table


def param_rows(params: nnx.State) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(path, shape, dtype, count) for each parameter, paths as in the state (`middle/inner/kernel`
    is `state['middle']['inner']['kernel']`), sorted by path."""
    rows = []
    for path, variable in nnx.to_flat_state(params):
        shape = tuple(variable.shape)
        rows.append(("/".join(map(str, path)), shape, str(variable.dtype), math.prod(shape)))
    return rows


def param_table(params: nnx.State) -> str:
    """The parameters as an aligned text table with a total line."""
    numbers = param_rows(params)
    rows = [(p, str(s), d, f"{c:,}") for p, s, d, c in numbers]
    total = sum(c for *_, c in numbers)
    footer = ("total", "", "", f"{total:,}")
    return format_table(("path", "shape", "dtype", "count"), rows, left=3, footer=footer)


def model_summary(model: Any) -> str:
    """`param_table` of an nnx model (concrete, or abstract from `nnx.eval_shape`)."""
    return param_table(nnx.state(model, nnx.Param))
