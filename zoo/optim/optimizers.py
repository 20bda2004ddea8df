"""Optimizers from optax, built from their declarations in zoo/optim/settings.py: the learning
rate schedule over `trainer.steps`, weight decay masked to kernels and embeddings, and gradient
clipping in front. Each `optim=<name>` is the `optim` group's component `<name>` in the one
registry, whose builder takes the optim config and the learning rate (a number or a schedule)
and returns the optax transformation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from zoo.config import registry
from zoo.errors import ZooError

NOT_DECAYED = ("bias", "scale")  # stacked layers give these a leading layer axis: 2 dims


class Optimizer(NamedTuple):
    """The update rule and the learning rate it uses at each update (0-based count)."""

    tx: optax.GradientTransformation  # clipping (with optim.clip_norm), then the optimizer
    learning_rate: optax.Schedule
    unclipped: optax.GradientTransformation  # the optimizer alone, for parameter groups


def decay_mask(params: Any) -> Any:
    """True for the parameters weight decay applies to: two or more dimensions (kernels,
    embeddings), but never a bias or a norm scale, which a stack of layers makes 2-D too."""

    def decayed(path: tuple, leaf: Any) -> bool:
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return leaf.ndim >= 2 and (not names or names[-1] not in NOT_DECAYED)

    return jax.tree_util.tree_map_with_path(decayed, params)


def _mask(c: Any) -> Callable[[Any], Any] | None:
    return None if c.decay_all else decay_mask


def _or_none(value: float) -> float | None:
    return value or None  # optax's way to say "off" for momentum


def adam(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps)


def adamw(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=_mask(c))


def sgd(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=_or_none(c.momentum), nesterov=c.nesterov)


def lion(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.lion(lr, b1=c.b1, b2=c.b2, weight_decay=c.weight_decay, mask=_mask(c))


def rmsprop(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.rmsprop(
        lr, decay=c.decay, eps=c.eps, momentum=_or_none(c.momentum), centered=c.centered
    )


def adafactor(c: Any, lr: Any) -> optax.GradientTransformation:
    return optax.adafactor(
        lr,
        min_dim_size_to_factor=c.min_dim_size_to_factor,
        decay_rate=c.decay_rate,
        multiply_by_parameter_scale=c.multiply_by_parameter_scale,
        clipping_threshold=c.clipping_threshold,
        momentum=_or_none(c.momentum),
        weight_decay_rate=c.weight_decay or None,
        eps=c.eps,
        factored=c.factored,
        weight_decay_mask=_mask(c),
    )


def make_schedule(optim_cfg: Any, steps: int) -> optax.Schedule:
    """The learning rate at each update count: linear warmup from 0 over `warmup_steps`, then
    constant, or a cosine or linear decay to `final_lr_fraction * lr` at `steps`."""
    lr, warmup, schedule = optim_cfg.lr, optim_cfg.warmup_steps, optim_cfg.schedule
    end = lr * optim_cfg.final_lr_fraction
    if schedule == "constant":
        if not warmup:
            return optax.constant_schedule(lr)
        return optax.warmup_constant_schedule(0.0, lr, warmup)
    if schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps, end_value=end)
    if schedule == "linear":
        decay = optax.linear_schedule(lr, end, steps - warmup)
        if not warmup:
            return decay
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])
    raise ZooError(f"optim.schedule={schedule} is unknown")


def make_optimizer(cfg: Any) -> Optimizer:
    """The optax transformation `cfg.optim.name` with its settings, its schedule over
    `cfg.trainer.steps` and, with `optim.clip_norm`, global-norm clipping in front (`unclipped`
    leaves it out: zoo.optim.groups clips all groups together, in front of the partition)."""
    optim_cfg = cfg.optim
    try:
        build = registry.builder("optim", optim_cfg.name)
    except registry.UnknownComponent:
        valid = ", ".join(registry.names("optim"))
        raise ZooError(f"optim={optim_cfg.name} is unknown; valid: {valid}") from None
    schedule = make_schedule(optim_cfg, cfg.trainer.steps)
    constant = optim_cfg.schedule == "constant" and not optim_cfg.warmup_steps
    # A constant rate is given as a number: no schedule count in the state (checkpoints of
    # runs from before schedules keep their layout).
    unclipped = build(optim_cfg, optim_cfg.lr if constant else schedule)
    tx = unclipped
    if optim_cfg.clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(optim_cfg.clip_norm), unclipped)
    return Optimizer(tx, schedule, unclipped)
