"""Freezing and per-path learning rates: parameters grouped by path patterns, one optax
transformation per group through `optax.partition`.

A frozen parameter gets `optax.set_to_zero()`: no update and no optimizer state at all (not a
gradient multiplied away). A learning-rate factor `f` chains `optax.scale(f)` after the
optimizer, which for adam, adamw and sgd (whose updates are proportional to the learning rate,
weight decay included) is the learning rate times `f`. Without freezing or factors the optimizer
is returned unchanged, so its state and results are exactly those of a plain run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import optax
from flax import nnx

from zoo.errors import ZooError
from zoo.paths import check_all_match, check_pattern, first_match, flat_variables, path_str

FROZEN = "frozen"


@dataclass(frozen=True)
class ParamGroups:
    """Each parameter path's group: `frozen`, or the learning-rate factor that applies to it."""

    factors: dict[str, float | None]  # path -> factor (1.0 by default), None when frozen
    sizes: dict[str, int]  # path -> number of values

    @property
    def frozen(self) -> list[str]:
        return [p for p, f in self.factors.items() if f is None]

    @property
    def trivial(self) -> bool:
        """Nothing frozen and every factor 1: the optimizer needs no partition."""
        return all(f == 1.0 for f in self.factors.values())

    def label(self, path: str) -> str:
        factor = self.factors[path]
        return FROZEN if factor is None else f"lr*{factor:g}"

    def describe(self) -> str:
        """'4,810 trainable parameters, 4,160 frozen (2 tensors: middle/inner/bias, ...)'."""
        frozen = self.frozen
        frozen_count = sum(self.sizes[p] for p in frozen)
        trainable = sum(self.sizes.values()) - frozen_count
        text = f"{trainable:,} trainable parameters, {frozen_count:,} frozen"
        if frozen:
            text += f" ({len(frozen)} tensors: {', '.join(frozen)})"
        scaled = {p: f for p, f in self.factors.items() if f not in (None, 1.0)}
        if scaled:
            text += "; learning rate x " + ", ".join(f"{f:g} for {p}" for p, f in scaled.items())
        return text


def param_groups(
    params: nnx.State | nnx.Module,
    *,
    freeze: Sequence[str] = (),
    lr_mult: Mapping[str, float] | None = None,
    freeze_key: str = "freeze",
    lr_mult_key: str = "lr_mult",
) -> ParamGroups:
    """Group the parameters by path: those `freeze` patterns select are frozen (freezing wins
    over a factor); otherwise the first `lr_mult` pattern that selects a path gives its factor.
    A pattern that selects nothing, or a factor that is not a positive finite number, is a
    ZooError naming it by `freeze_key` / `lr_mult_key` (the config keys)."""
    variables = flat_variables(
        nnx.state(params, nnx.Param) if isinstance(params, nnx.Module) else params
    )
    paths = list(variables)
    freeze = [check_pattern(p) for p in ([freeze] if isinstance(freeze, str) else freeze)]
    lr_mult = dict(lr_mult or {})
    for pattern, factor in lr_mult.items():
        check_pattern(pattern)
        number = isinstance(factor, int | float) and not isinstance(factor, bool)
        if not number or not math.isfinite(factor) or factor <= 0:
            raise ZooError(
                f"{lr_mult_key}: factor {factor!r} for {pattern!r} must be a positive number "
                f"(use {freeze_key} to stop updates)"
            )
    check_all_match(freeze, paths, what=f"{freeze_key} pattern")
    check_all_match(list(lr_mult), paths, what=f"{lr_mult_key} pattern")
    factors: dict[str, float | None] = {}
    for path in paths:
        if first_match(freeze, path) is not None:
            factors[path] = None
        else:
            pattern = first_match(list(lr_mult), path)
            factors[path] = float(lr_mult[pattern]) if pattern is not None else 1.0
    sizes = {p: math.prod(v.shape) for p, v in variables.items()}
    return ParamGroups(factors, sizes)


def partition_optimizer(
    tx: optax.GradientTransformation, groups: ParamGroups
) -> optax.GradientTransformation:
    """`tx` for the trainable parameters, scaled per group; frozen ones get no update and no
    state. `tx` itself when the groups are trivial."""
    if groups.trivial:
        return tx
    transforms = {}
    for path in groups.factors:
        label, factor = groups.label(path), groups.factors[path]
        if factor is None:
            transforms[label] = optax.set_to_zero()
        else:
            transforms[label] = tx if factor == 1.0 else optax.chain(tx, optax.scale(factor))

    def labels(params: nnx.State) -> nnx.State:
        return jax.tree_util.tree_map_with_path(
            lambda path, _: groups.label(_path(path)),
            params,
            is_leaf=lambda x: isinstance(x, nnx.Variable),
        )

    return optax.partition(transforms, labels)


def _path(keys: tuple) -> str:
    """A jax key path of a State's Variable -> its state path."""
    return path_str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in keys)
