"""Optimizers from optax, built from their declarations in zoo/optim_settings.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from zoo.errors import ZooError

BUILDERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "adam": lambda c: optax.adam(c.lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adamw": lambda c: optax.adamw(c.lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay),
    "sgd": lambda c: optax.sgd(c.lr, momentum=c.momentum or None, nesterov=c.nesterov),
}


def make_optimizer(optim_cfg: Any) -> optax.GradientTransformation:
    """The optax transformation `optim_cfg.name` with the config's settings."""
    if optim_cfg.name not in BUILDERS:
        raise ZooError(f"optim={optim_cfg.name} is unknown; valid: {', '.join(BUILDERS)}")
    return BUILDERS[optim_cfg.name](optim_cfg)
