"""Features by path: `features(model, x, paths)` runs the model once and returns the outputs of
the modules the path patterns name, like timm's `forward_intermediates`, for any zoo model.

A pattern (zoo.paths syntax) names modules by their state path: `stages/1`, `stages/*`, `stem`.
A stacked module (`create_stacked`, applied by `scan_blocks`) gives every layer's output, stacked
on a leading layer axis; `blocks[3]` takes layer 3 alone. Modules inside a stack are applied in a
scan, so their outputs cannot be taken one by one: name the stack's layers instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from zoo.errors import ZooError
from zoo.models import layers
from zoo.paths import check_pattern, match, nearest_hint, path_str, shown

_LAYER = re.compile(r"^(.*)\[(\d+)\]$")


@functools.cache
def _recording(cls: type) -> type:
    """A subclass of `cls` whose calls hand their output to `_SINK` (by the module's id)."""

    def __call__(self, *args, **kwargs):
        out = cls.__call__(self, *args, **kwargs)
        _SINK[id(self)](out)
        return out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


_SINK: dict[int, Any] = {}


def _selects(pattern: str, path: str) -> bool:
    """Whether `pattern` names the module at `path` itself (not only a module above it)."""
    parent = path.rpartition("/")[0]
    return match(pattern, path) and not (parent and match(pattern, parent))


def features(model: nnx.Module, x: Any, paths: Sequence[str] | str) -> dict[str, jax.Array]:
    """The outputs of the modules `paths` name, from one forward pass of `model` on `x`.

    Args:
        model: a zoo model (any nnx.Module whose submodules are called).
        x: the model's input.
        paths: path patterns of modules (`stages/*`, `blocks[3]`, `blocks`).

    Returns:
        Each named module's output by its path (`blocks[3]` as given; a stack by its path, with
        a leading layer axis), in the order of the model's modules.

    Raises:
        ZooError: a pattern that names no module (with the nearest ones), a module inside a
            stack, or a layer index past the stack's depth.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    modules = {path_str(p): m for p, m in nnx.iter_modules(model) if p}
    stacks = {p for p in modules if getattr(modules[p], "zoo_stacked", False) is True}
    chosen: dict[str, list[int] | None] = {}  # module path -> layers taken (None: the module)
    for pattern in paths:
        layer = _LAYER.match(pattern) if isinstance(pattern, str) else None
        base = check_pattern(layer[1] if layer else pattern)
        found = [p for p in modules if _selects(base, p)]
        if not found:
            raise ZooError(
                f"features: {shown(pattern)} names no module; {nearest_hint(base, list(modules))}"
            )
        for path in found:
            inside = [s for s in stacks if path.startswith(s + "/")]
            if inside:
                raise ZooError(
                    f"features: {path} lies inside the scanned stack {inside[0]}; take its "
                    f"layers' outputs instead ({inside[0]} or {inside[0]}[i])"
                )
            if layer is None:
                chosen[path] = None
                continue
            if path not in stacks:
                raise ZooError(f"features: {path} is not a stack of layers; {shown(pattern)}")
            depth = jax.tree.leaves(nnx.state(modules[path]))[0].shape[0]
            if int(layer[2]) >= depth:
                raise ZooError(f"features: {pattern} is past the {depth} layers of {path}")
            if path in chosen and chosen[path] is None:
                continue
            chosen[path] = [*(chosen.get(path) or []), int(layer[2])]
    outputs: dict[str, Any] = {}
    swapped, collecting = [], []
    try:
        for path in chosen:
            module = modules[path]

            def keep(out, path=path):
                outputs[path] = out

            if path in stacks:
                layers.COLLECT[id(module)] = keep
                collecting.append(id(module))
            else:
                _SINK[id(module)] = keep
                object.__setattr__(module, "__class__", _recording(type(module)))
                swapped.append(module)
        model(x)
    finally:
        for module in swapped:
            object.__setattr__(module, "__class__", type(module).__mro__[1])
            _SINK.pop(id(module), None)
        for key in collecting:
            layers.COLLECT.pop(key, None)
    result = {}
    for path in modules:
        if path not in chosen or path not in outputs:
            continue
        if chosen[path] is None:
            result[path] = outputs[path]
        else:
            for i in chosen[path]:
                result[f"{path}[{i}]"] = outputs[path][i]
    return result
