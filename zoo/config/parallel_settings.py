"""The `parallel` section of zoo-train: a named device mesh and sharding rules over state paths.

Checked here, before any JAX work: the mesh's axis names and sizes, and each rule's pattern and
the axis names its spec uses. What needs the devices and the shapes (the mesh's product, a
spec's length, a dimension the axes do not divide) is checked by zoo.training.sharding, still
before anything is allocated.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError

DATA, FSDP, TENSOR = "data", "fsdp", "tensor"
MESH_AXES = (DATA, FSDP, TENSOR)  # always in the mesh (size 1 unless set); more may be added
MAX_AXES = 8
# A rule: [pattern, spec], spec one entry per dimension: an axis name, a list of them, or null.
Spec = list[str | list[str] | None]


@declare("app", "parallel")
@dataclass(frozen=True)
class ParallelSettings:
    """How a run spreads over the devices: a named mesh, and rules that shard state by path."""

    mesh: dict[str, int] = setting(
        {DATA: -1, FSDP: 1, TENSOR: 1},
        "mesh axis -> size over all processes' devices; -1 (at most one): the devices left",
        max_items=MAX_AXES,
    )
    rules: list[tuple[str, Spec]] = setting(
        [],
        "[[pattern, spec], ...] over state paths, first match wins; spec per dimension: an "
        "axis, a list of axes or null; unmatched: replicated",
        max_items=1024,
    )
    family_rules: bool = setting(
        False, "after parallel.rules, the model family's own tensor-parallel rules (parallel=tp)"
    )
    auto_fsdp: bool = setting(
        False,
        "shard each tensor of >= 2 dims not placed by parallel.rules on fsdp, along its "
        "largest free dimension that fsdp divides (parallel=fsdp)",
    )

    def __post_init__(self) -> None:
        mesh = dict(self.mesh)
        for name, size in mesh.items():
            if not name.isidentifier():
                raise SettingError(f"parallel.mesh: axis name {name!r} is not an identifier")
            if isinstance(size, bool) or not isinstance(size, int) or not (size == -1 or size >= 1):
                raise SettingError(
                    f"parallel.mesh.{name}={size!r} is invalid: must be an integer >= 1, or -1 "
                    "for the devices left"
                )
        if sum(size == -1 for size in mesh.values()) > 1:
            filled = ", ".join(name for name, size in mesh.items() if size == -1)
            raise SettingError(
                f"parallel.mesh: only one axis may be -1 (the devices left): {filled}"
            )
        axes = set(mesh) | set(MESH_AXES)
        for i, rule in enumerate(self.rules):
            pattern, spec = _rule_parts(rule, i)
            for entry in spec:
                for axis in [entry] if isinstance(entry, str) else entry or []:
                    if axis not in axes:
                        raise SettingError(
                            f"parallel.rules[{i}] {pattern!r}: unknown mesh axis {axis!r}; "
                            f"the mesh has {', '.join(sorted(axes))}"
                        )


def _rule_parts(rule: Any, index: int) -> tuple[str, list[Any]]:
    """(pattern, spec) of one rule, or a SettingError naming it."""
    if not isinstance(rule, list | tuple) or len(rule) != 2:
        raise SettingError(f"parallel.rules[{index}] must be [pattern, spec], got {rule!r}")
    pattern, spec = rule
    if not isinstance(pattern, str) or not isinstance(spec, list | tuple):
        raise SettingError(f"parallel.rules[{index}] must be [pattern, spec], got {rule!r}")
    return pattern, list(spec)
