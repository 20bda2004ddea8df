"""The optim group's settings, declared once per optimizer (no JAX): `optim=<name>` options.
zoo/optimizers.py builds each from optax."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.declarations import declare, setting


@dataclass(frozen=True, kw_only=True)
class ParamGroupSettings:
    """Shared by every optimizer: parameters chosen by path pattern (zoo.paths) are frozen or get
    their own learning rate (zoo.param_groups)."""

    freeze: list[str] = setting([], "path patterns of parameters left as they are (no state)")
    lr_mult: dict[str, float] = setting(
        {}, "learning-rate factor by path pattern (the first that matches)", gt=0
    )


@declare("optim", "adam")
@dataclass(frozen=True)
class AdamSettings(ParamGroupSettings):
    """Adam (optax.adam)."""

    lr: float = setting(1e-2, "learning rate", gt=0)
    b1: float = setting(0.9, "decay of the first moment", ge=0, lt=1)
    b2: float = setting(0.999, "decay of the second moment", ge=0, lt=1)
    eps: float = setting(1e-8, "added to the denominator", gt=0)


@declare("optim", "adamw")
@dataclass(frozen=True)
class AdamWSettings(AdamSettings):
    """Adam with decoupled weight decay (optax.adamw)."""

    weight_decay: float = setting(1e-4, "decoupled weight decay", ge=0)


@declare("optim", "sgd")
@dataclass(frozen=True)
class SGDSettings(ParamGroupSettings):
    """Stochastic gradient descent with momentum (optax.sgd)."""

    lr: float = setting(1e-1, "learning rate", gt=0)
    momentum: float = setting(0.9, "momentum; 0: none", ge=0, lt=1)
    nesterov: bool = setting(False, "Nesterov momentum")
