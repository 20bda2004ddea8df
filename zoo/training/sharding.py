"""Sharding by path: which mesh axes split each dimension of each tensor of a run's state.

A run's parameters are placed by `parallel.rules` (`[pattern, spec]`, the zoo's path globs,
first match wins), then, with `parallel.family_rules`, by the model family's own
tensor-parallel rules (the `tensor_parallel_rules()` of its settings declaration), and with
`parallel.auto_fsdp` every tensor of two or more dimensions that `parallel.rules` did not place
is also split on `fsdp` along its largest free dimension that `fsdp` divides (never the layer
axis of stacked blocks, which the scan walks through). A tensor nothing places is replicated.

Every check happens here on shapes alone, before anything is allocated: a spec of the wrong
length, an unknown axis, an axis used twice and a dimension the axes do not divide are each one
line naming the rule and the path. The optimizer state and the EMA follow their parameters (an
optimizer-state leaf takes the spec of the parameter whose path ends its own path, shape equal);
everything else (RNG counters, the step, the data key, scalars) is replicated. JAX's SPMD
partitioner (jit with these in/out shardings) puts in the collectives.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.config.parallel_settings import FSDP
from zoo.config.registry import declaration
from zoo.errors import ZooError
from zoo.memory import human
from zoo.models.layers import in_stacked, stacked_paths
from zoo.paths import check_all_match, first_match, path_str

log = logging.getLogger(__name__)

RuleList = Sequence[Sequence[Any]]  # [[pattern, spec], ...]


@dataclass(frozen=True)
class Placement:
    """Each parameter path's PartitionSpec, and which rule gave it (None: replicated)."""

    specs: dict[str, PartitionSpec]
    sources: dict[str, str | None]
    shapes: dict[str, tuple[tuple[int, ...], Any]]  # path -> (shape, dtype)
    mesh: dict[str, int]  # axis -> size

    def as_json(self) -> dict[str, Any]:
        """`sharding.json`: the mesh, and per parameter path its shape, spec (one entry per
        dimension: an axis, a list of axes or null) and the rule that gave it (null: none)."""
        params = {
            path: {
                "shape": list(self.shapes[path][0]),
                "spec": [list(e) if isinstance(e, tuple) else e for e in _full(spec, path, self)],
                "rule": self.sources[path],
            }
            for path, spec in self.specs.items()
        }
        return {"mesh": self.mesh, "params": params}

    def replicated_bytes(self) -> int:
        """Bytes of the parameters no rule splits (whole on every device)."""
        return sum(
            math.prod(shape) * np.dtype(dtype).itemsize
            for path, (shape, dtype) in self.shapes.items()
            if not any(self.specs[path])
        )


def _full(spec: PartitionSpec, path: str, placement: Placement) -> list[Any]:
    ndim = len(placement.shapes[path][0])
    return list(spec) + [None] * (ndim - len(spec))


def family_rules(name: str, kwargs: Mapping[str, Any]) -> list[list[Any]]:
    """The tensor-parallel rules model family `name` declares beside its settings: its
    declaration's `tensor_parallel_rules()`, called on the settings the run builds it with."""
    declared = declaration("model", name)
    hook = getattr(declared, "tensor_parallel_rules", None)
    if hook is None:
        raise ZooError(
            f"parallel.family_rules=true (parallel=tp, fsdp_tp): model {name!r} declares no "
            "tensor-parallel rules; give parallel.rules instead"
        )
    fields = {f.name for f in dataclasses.fields(declared)}
    return [
        list(rule) for rule in hook(declared(**{k: v for k, v in kwargs.items() if k in fields}))
    ]


def place(
    abstract_model: nnx.Module,
    mesh: Mesh,
    rules: RuleList = (),
    family: RuleList = (),
    auto_fsdp: bool = False,
) -> Placement:
    """The PartitionSpec of every parameter of `abstract_model` (from `nnx.eval_shape`), or a
    ZooError naming the first rule and path that cannot work on `mesh`."""
    params = nnx.state(abstract_model, nnx.Param)
    shapes = {
        path_str(path): (tuple(var.get_value().shape), var.get_value().dtype)
        for path, var in nnx.to_flat_state(params)
    }
    stacked = stacked_paths(abstract_model)
    user = [
        (f"parallel.rules[{i}] {rule[0]!r}", rule[0], list(rule[1])) for i, rule in enumerate(rules)
    ]
    check_all_match([r[1] for r in user], list(shapes), what="parallel.rules pattern")
    fam = [(f"{rule[0]!r} of the family's rules", rule[0], list(rule[1])) for rule in family]
    specs: dict[str, PartitionSpec] = {}
    sources: dict[str, str | None] = {}
    for path, (shape, _) in shapes.items():
        spec: list[Any] = [None] * len(shape)
        source, by_user = None, False
        for candidates, is_user in ((user, True), (fam, False)):
            found = first_match([c[1] for c in candidates], path)
            if found is not None:
                label, _, spec = next(c for c in candidates if c[1] == found)
                source, by_user = label, is_user
                _check_spec(label, path, shape, spec, mesh)
                break
        if auto_fsdp and not by_user and len(shape) >= 2:
            layer_axis = in_stacked(path, stacked)
            widened = with_fsdp(spec, shape, mesh, skip_first=layer_axis)
            if widened != spec:
                spec, source = widened, (f"{source} + auto_fsdp" if source else "auto_fsdp")
        specs[path] = PartitionSpec(*(tuple(e) if isinstance(e, list | tuple) else e for e in spec))
        sources[path] = source if any(spec) else None
    return Placement(specs, sources, shapes, dict(mesh.shape))


def _axes(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _check_spec(label: str, path: str, shape: tuple[int, ...], spec: list[Any], mesh: Mesh) -> None:
    where = f"{label} on {path} (shape {list(shape)})"
    if len(spec) != len(shape):
        raise ZooError(
            f"{where}: the spec {spec} has length {len(spec)}, but the tensor has "
            f"{len(shape)} dimensions (the layer axis of stacked blocks included)"
        )
    used: list[str] = []
    for axis in (axis for entry in spec for axis in _axes(entry)):
        if axis not in mesh.shape:
            raise ZooError(
                f"{where}: unknown mesh axis {axis!r}; the mesh has " + ", ".join(mesh.axis_names)
            )
        if axis in used:
            raise ZooError(f"{where}: mesh axis {axis!r} is used twice in one spec")
        used.append(axis)
    for dim, (size, entry) in enumerate(zip(shape, spec, strict=True)):
        parts = math.prod(mesh.shape[a] for a in _axes(entry))
        if size % parts:
            raise ZooError(
                f"{where}: dimension {dim} of size {size} does not divide over "
                f"{'x'.join(_axes(entry))}={parts} devices; change the rule or parallel.mesh"
            )


def with_fsdp(spec: list[Any], shape: tuple[int, ...], mesh: Mesh, skip_first: bool) -> list[Any]:
    """`spec` with `fsdp` added on the largest dimension it leaves free that fsdp's size
    divides (the first of equal ones); unchanged when fsdp is 1 or used, or none divides."""
    size = mesh.shape.get(FSDP, 1)
    if size == 1 or any(FSDP in _axes(e) for e in spec):
        return spec
    free = [
        d
        for d, (n, e) in enumerate(zip(shape, spec, strict=True))
        if e is None and n % size == 0 and not (skip_first and d == 0)
    ]
    if not free:
        return spec
    best = max(free, key=lambda d: (shape[d], -d))
    return [FSDP if d == best else e for d, e in enumerate(spec)]


def param_shardings(placement: Placement, state: Any, mesh: Mesh) -> Any:
    """NamedShardings for a model's State (or its abstract version), leaf by leaf: each
    parameter by `placement`, every other variable (RNG keys and counters) replicated."""
    replicated = PartitionSpec()

    def one(keypath: tuple, _: Any) -> NamedSharding:
        return NamedSharding(mesh, placement.specs.get(_keypath_str(keypath), replicated))

    return jax.tree_util.tree_map_with_path(one, state)


def state_shardings(placement: Placement, abstract_state: Any, mesh: Mesh) -> Any:
    """The NamedShardings of a TrainState (abstract: from `jax.eval_shape`): params and EMA by
    `placement`, every optimizer-state leaf as the parameter its path ends with (same shape),
    the rest replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    by_path = {
        path: (shape, NamedSharding(mesh, spec))
        for path, spec in placement.specs.items()
        for shape in [placement.shapes[path][0]]
    }

    def follow(keypath: tuple, leaf: Any) -> NamedSharding:
        path = _keypath_str(keypath)
        parts = path.split("/")
        for start in range(len(parts)):  # longest suffix first
            found = by_path.get("/".join(parts[start:]))
            if found is not None and found[0] == tuple(leaf.shape):
                return found[1]
        return replicated

    return abstract_state._replace(
        params=jax.tree_util.tree_map_with_path(follow, abstract_state.params),
        rest=jax.tree.map(lambda _: replicated, abstract_state.rest),
        opt_state=jax.tree_util.tree_map_with_path(follow, abstract_state.opt_state),
        step=replicated,
        data_key=replicated,
        ema=None
        if abstract_state.ema is None
        else jax.tree_util.tree_map_with_path(follow, abstract_state.ema),
    )


def _keypath_str(keypath: tuple) -> str:
    """A tree key path as a state path: `blocks/attn/key/kernel` (the Variable's `.value` and
    the optimizer's own levels are what `state_shardings` strips by suffix)."""
    names = []
    for key in keypath:
        if isinstance(key, jax.tree_util.DictKey):
            names.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            names.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            names.append(key.name)
        else:
            names.append(str(key))
    if names and names[-1] == "value":
        names.pop()
    return "/".join(names)


def per_device_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes the largest device holds of `abstract` (shapes) laid out by `shardings`."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        shard = sharding.shard_shape(tuple(leaf.shape))
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


def log_placement(placement: Placement, state_bytes: int, total_bytes: int, mesh: Mesh) -> None:
    """The run's log: parameters and optimizer state per device, and what stays replicated."""
    sharded = sum(1 for s in placement.sources.values() if s is not None)
    log.info(
        "sharding: parameters and optimizer state %s per device (%s in all) over mesh %s; "
        "%d of %d parameter tensors sharded, %s of parameters replicated (no rule splits them)",
        human(state_bytes),
        human(total_bytes),
        " ".join(f"{k}={v}" for k, v in mesh.shape.items()),
        sharded,
        len(placement.specs),
        human(placement.replicated_bytes()),
    )
