"""Loading weights by state path (model surgery), and the report of what fitted.

`load_weights` matches the model's variables (RNG state aside) with a source's tensors by path,
after renaming the source's paths and narrowing both sides with include/exclude patterns
(`zoo.paths`). Every path ends up in exactly one list of the `LoadReport`: `loaded`, `missing`
(in the model, not in the source: left as it was), `unexpected` (in the source, unused),
`mismatched` (same path, other shape or dtype: left as it was) or `excluded` (a model path the
patterns leave out: left as it was). Everything is checked before anything is written.

Stacked layers (the modules `zoo.models.layers.create_stacked` makes, e.g. `blocks`) load by
layer: a source tensor of shape `(L, ...)` fills the first layers of a model tensor `(M, ...)`
with the same trailing shape. The report names layer ranges as half-open slices of the layer axis:
`blocks/inner/kernel[0:1]` loaded and `blocks/inner/kernel[1:3]` missing when growing 2 -> 4 deep
(1 -> 3 stacked blocks); shrinking 4 -> 2 loads `[0:1]` and reports the source's extra layers as
mismatched, `blocks/inner/kernel[1:3]`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from zoo.errors import ZooError
from zoo.files import write_atomically
from zoo.models.layers import in_stacked, stacked_paths
from zoo.paths import check_all_match, check_pattern, first_match, flat_variables, nearest_hint
from zoo.weights.sources import WeightSource, describe_tensor, open_source

Rename = Mapping[str, str] | Sequence[Sequence[str]] | None
Patterns = str | Sequence[str] | None


@dataclass
class LoadReport:
    """What `load_weights` did, path by path (layer ranges of stacked tensors as `path[a:b]`)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # mismatched entry -> why
    renamed: dict[str, str] = field(default_factory=dict)  # source path -> model path

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON to `path` (whole or not at all)."""
        path = Path(path)
        write_atomically(path, self.to_json() + "\n")
        return path

    def counts(self) -> str:
        """'4 loaded, 2 missing, 0 unexpected, 1 mismatched, 0 excluded'."""
        kinds = ("loaded", "missing", "unexpected", "mismatched", "excluded")
        return ", ".join(f"{len(getattr(self, kind))} {kind}" for kind in kinds)

    def table(self) -> str:
        """The counts, then one line per path not loaded, for a log."""
        lines = [f"weights from {self.source}: {self.counts()}"]
        for kind in ("missing", "unexpected", "mismatched", "excluded"):
            for entry in getattr(self, kind):
                why = self.reasons.get(entry)
                lines.append(f"  {kind:<10}  {entry}" + (f"  ({why})" if why else ""))
        return "\n".join(lines)

    def problem_line(self) -> str:
        """Every difference, on one line."""
        parts = []
        for kind in ("missing", "unexpected", "mismatched"):
            entries = [
                f"{e} ({self.reasons[e]})" if e in self.reasons else e for e in getattr(self, kind)
            ]
            if entries:
                parts.append(f"{len(entries)} {kind}: {', '.join(entries)}")
        return f"{self.source} does not fit the model (strict): " + "; ".join(parts)


class _Copy(NamedTuple):
    target: str  # model path
    source: str  # source path
    layers: int | None  # the first `layers` layers of a stacked tensor; None: the whole tensor


def plan_load(
    model: nnx.Module,
    source: Any,
    *,
    strict: bool = True,
    rename: Rename = None,
    include: Patterns = None,
    exclude: Patterns = None,
    cast: bool = False,
) -> LoadReport:
    """The report `load_weights` would give, without reading or writing any tensor.

    Args:
        model: the model, which may be abstract (`nnx.eval_shape`).
        source: as for `load_weights`.
        strict: as for `load_weights`.
        rename: as for `load_weights`.
        include: as for `load_weights`.
        exclude: as for `load_weights`.
        cast: as for `load_weights`.

    Returns:
        The LoadReport.

    Raises:
        ZooError: with `strict`, every difference in one line; a pattern or rename that
            matches nothing.
    """
    source = open_source(source).fitted(model)
    return _plan(model, source, strict, rename, include, exclude, cast)[0]


def load_weights(
    model: nnx.Module,
    source: Any,
    *,
    strict: bool = True,
    rename: Rename = None,
    include: Patterns = None,
    exclude: Patterns = None,
    cast: bool = False,
) -> LoadReport:
    """Copy weights from `source` into `model` by path and report what fitted.

    Args:
        model: the model to load into (changed in place).
        source: a pretrained directory, a train run directory, a checkpoint step directory
            (`<run>/checkpoints/<step>`), a model or an `nnx.State`.
        strict: any missing, unexpected or mismatched path is an error, and nothing is loaded.
        rename: (regex, replacement) pairs (or a mapping) applied in order to each source path
            with `re.sub`.
        include: path patterns (`zoo.paths`) of the paths that take part; None: all.
        exclude: path patterns of paths that take no part (reported as `excluded`).
        cast: a tensor of another dtype but the right shape is cast to the model's dtype instead
            of being mismatched.

    Returns:
        The LoadReport: every path loaded, missing, unexpected, mismatched or excluded.

    Raises:
        ZooError: with `strict`, every difference in one line (the model unchanged); a pattern
            or rename that matches nothing; a non-finite tensor to be loaded.
    """
    source = open_source(source).fitted(model)
    report, copies = _plan(model, source, strict, rename, include, exclude, cast)
    arrays = source.read(sorted({c.source for c in copies}))
    bad = sorted(p for p, a in arrays.items() if not _all_finite(a))
    if bad:
        raise ZooError(f"{source}: non-finite values in {', '.join(bad)}; nothing was loaded")
    variables = flat_variables(model)
    for copy in copies:
        variable = variables[copy.target]
        value = _placed_like(arrays[copy.source], variable)
        if copy.layers is None:
            variable.set_value(value)  # (also fills an abstract model's variable)
        else:
            variable[...] = variable[...].at[: copy.layers].set(value[: copy.layers])
    return report


def _placed_like(array: np.ndarray, variable: nnx.Variable) -> jax.Array:
    """`array` in the variable's dtype, laid out as its current value: a sharded model's tensor
    goes shard by shard onto its devices (no device holds it whole; zoo.training.sharding). An
    abstract model's variable (a shape only) takes the array as it is."""
    current = variable.get_value()
    sharding = getattr(current, "sharding", None)
    if not isinstance(sharding, NamedSharding) or sharding.is_fully_replicated:
        return jnp.asarray(array, dtype=variable.dtype)
    host = np.asarray(array).astype(variable.dtype)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _all_finite(array: np.ndarray) -> bool:
    return not jnp.issubdtype(array.dtype, jnp.inexact) or bool(np.isfinite(array).all())


def _plan(
    model: nnx.Module,
    source: WeightSource,
    strict: bool,
    rename: Rename,
    include: Patterns,
    exclude: Patterns,
    cast: bool,
) -> tuple[LoadReport, list[_Copy]]:
    wanted = {p: jax.ShapeDtypeStruct(v.shape, v.dtype) for p, v in flat_variables(model).items()}
    given = source.layout
    renamed = _renamed(list(given), _rename_rules(rename))
    by_target = {new: old for old, new in renamed.items()}
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    every_path = sorted(wanted.keys() | by_target.keys())
    check_all_match(include, every_path, what="include pattern")
    check_all_match(exclude, every_path, what="exclude pattern")

    def takes_part(path: str) -> bool:
        included = not include or first_match(include, path) is not None
        return included and first_match(exclude, path) is None

    stacked = stacked_paths(model)
    report = LoadReport(
        str(source), renamed={old: new for old, new in renamed.items() if old != new}
    )
    copies = []
    for path, want in sorted(wanted.items()):
        if not takes_part(path):
            report.excluded.append(path)
            continue
        if path not in by_target:
            report.missing.append(path)
            continue
        got = given[by_target[path]]
        same_dtype = got.dtype == want.dtype or cast
        if same_dtype and got.shape == want.shape:
            report.loaded.append(path)
            copies.append(_Copy(path, by_target[path], None))
        elif same_dtype and in_stacked(path, stacked) and _other_depth(got.shape, want.shape):
            have, need = got.shape[0], want.shape[0]
            layers = min(have, need)
            report.loaded.append(f"{path}[0:{layers}]")
            copies.append(_Copy(path, by_target[path], layers))
            if have < need:
                report.missing.append(f"{path}[{have}:{need}]")
            else:
                extra = f"{path}[{need}:{have}]"
                report.mismatched.append(extra)
                report.reasons[extra] = f"the source has {have} layers, the model {need}"
        else:
            report.mismatched.append(path)
            report.reasons[path] = (
                f"source {describe_tensor(got)}, model wants {describe_tensor(want)}"
            )
    report.unexpected = sorted(
        old for old, new in renamed.items() if new not in wanted and takes_part(new)
    )
    if strict and not report.ok:
        raise ZooError(report.problem_line())
    return report, copies


def _other_depth(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Same trailing shape, another (non-zero) number of layers on the leading axis."""
    return len(got) == len(want) >= 1 and got[1:] == want[1:] and got[0] > 0


def _patterns(patterns: Patterns, what: str) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Sequence):  # a Hydra ListConfig is a Sequence too
        raise ZooError(f"{what} must be a list of path patterns, got {patterns!r}")
    return [check_pattern(p) for p in patterns]


def _rename_rules(rename: Rename) -> list[tuple[re.Pattern, str]]:
    """(compiled regex, replacement) pairs from a mapping or a list of pairs."""
    if rename is None:
        return []
    pairs = list(rename.items()) if isinstance(rename, Mapping) else list(rename)
    rules = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise ZooError(
                f"rename: {pair!r} is not a [regex, replacement] pair of strings "
                "(rename is a list of such pairs, or a mapping)"
            )
        try:
            rules.append((re.compile(pair[0]), pair[1]))
        except re.error as err:
            raise ZooError(f"rename: {pair[0]!r} is not a regular expression ({err})") from None
    return rules


def _renamed(paths: list[str], rules: list[tuple[re.Pattern, str]]) -> dict[str, str]:
    """Each source path -> its name after the rules, applied in order."""
    current = {p: p for p in paths}
    for regex, replacement in rules:
        if not any(regex.search(new) for new in current.values()):
            hint = nearest_hint(regex.pattern, list(current.values()))
            raise ZooError(f"rename {regex.pattern!r} matches no source path; {hint}")
        try:
            current = {old: regex.sub(replacement, new) for old, new in current.items()}
        except (re.error, IndexError) as err:
            raise ZooError(f"rename: bad replacement {replacement!r} ({err})") from None
    seen: dict[str, str] = {}
    for old, new in current.items():
        if new in seen:
            raise ZooError(f"rename maps both {seen[new]!r} and {old!r} to {new!r}")
        seen[new] = old
    return current
