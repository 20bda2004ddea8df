"""Freezing and per-path learning rates: parameters grouped by path patterns, one optax
transformation per group through `optax.partition`.

A frozen parameter gets `optax.set_to_zero()`: no update and no optimizer state at all (not a
gradient multiplied away). A learning-rate factor `f` chains `optax.scale(f)` after the
optimizer, which for adam, adamw and sgd (whose updates are proportional to the learning rate,
weight decay included) is the learning rate times `f`. Without freezing or factors the optimizer
is returned unchanged, so its state and results are exactly those of a plain run.

Whatever must see every group at once happens before the partition, on the whole tree: gradient
clipping by the global norm (over the trainable parameters), and gradient accumulation (in
zoo.training.steps, before the optimizer). Each group's optimizer sees its parameters under their
own paths, so path-based masks inside it (weight decay, zoo.optim.optimizers.decay_mask) are
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
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
        """The path's group: `frozen`, or `lr*<factor>`, one label for each distinct factor."""
        factor = self.factors[path]
        return FROZEN if factor is None else f"lr*{factor_text(factor)}"

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
            text += "; learning rate x " + ", ".join(
                f"{factor_text(f)} for {p}" for p, f in scaled.items()
            )
        return text


def factor_text(factor: float) -> str:
    """The factor as written shortest: `0.5`, `10`, `1.000001`; two factors get the same text
    only when they are equal (so groups are told apart by exact value)."""
    short = f"{factor:g}"  # the labels of checkpoints written before exact labels
    return short if float(short) == factor else repr(factor)


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
    A pattern that selects nothing, a factor that is not a positive finite number, or freezing
    every parameter (nothing would train) is a ZooError naming it by `freeze_key` /
    `lr_mult_key` (the config keys)."""
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
    if paths and all(f is None for f in factors.values()):
        raise ZooError(
            f"{freeze_key}=[{', '.join(freeze)}] freezes all {len(paths)} parameter tensors: "
            "nothing would train"
        )
    sizes = {p: math.prod(v.shape) for p, v in variables.items()}
    return ParamGroups(factors, sizes)


def partition_optimizer(
    tx: optax.GradientTransformation, groups: ParamGroups, *, clip_norm: float | None = None
) -> optax.GradientTransformation:
    """`tx` for the trainable parameters, scaled per group; frozen ones get no update and no
    state. With `clip_norm`, the gradients of all trainable parameters are first clipped
    together to that global norm, as without groups (never group by group).

    `tx` is the optimizer without clipping; with trivial groups the result is `tx` (after
    `optax.clip_by_global_norm(clip_norm)`, when given), the plain run's optimizer."""
    clip = None if clip_norm is None else optax.clip_by_global_norm(clip_norm)
    if groups.trivial:
        return tx if clip is None else optax.chain(clip, tx)
    # With clipping, each group's optimizer keeps a stateless step where its clipping used to
    # be: the optimizer state, and so the checkpoints of earlier runs, keep their layout.
    rule = tx if clip is None else optax.chain(optax.identity(), tx)
    transforms = {}
    for path in groups.factors:
        label, factor = groups.label(path), groups.factors[path]
        if factor is None:
            transforms[label] = optax.set_to_zero()
        else:
            transforms[label] = rule if factor == 1.0 else optax.chain(rule, optax.scale(factor))

    def labels(params: nnx.State) -> nnx.State:
        return jax.tree_util.tree_map_with_path(
            lambda path, _: groups.label(_path(path)),
            params,
            is_leaf=lambda x: isinstance(x, nnx.Variable),
        )

    partitioned = optax.partition(transforms, labels)
    if clip is None:
        return partitioned

    def update(updates, state, params=None):
        # A frozen parameter's gradient is never applied: it must not shrink the others.
        trainable = jax.tree.map(
            lambda label, grad: jax.tree.map(jnp.zeros_like, grad) if label == FROZEN else grad,
            labels(updates),
            updates,
        )
        clipped, _ = clip.update(trainable, optax.EmptyState())
        return partitioned.update(clipped, state, params)

    return optax.GradientTransformation(partitioned.init, update)


def _path(keys: tuple) -> str:
    """A jax key path of a State's Variable -> its state path."""
    return path_str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in keys)
