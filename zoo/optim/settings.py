"""The optim group's settings, declared once per optimizer (no JAX): `optim=<name>` options.
zoo/optim/optimizers.py builds each from optax.

Every optimizer shares `OptimizerSettings` (the learning rate, its schedule over `trainer.steps`,
gradient clipping, frozen parameters and per-path factors); those with a weight decay share
`DecaySettings` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.types import SettingError

SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True, kw_only=True)
class ParamGroupSettings:
    """Shared by every optimizer: parameters chosen by path pattern (zoo.paths) are frozen or get
    their own learning rate (zoo.optim.groups)."""

    freeze: list[str] = setting([], "path patterns of parameters left as they are (no state)")
    lr_mult: dict[str, float] = setting(
        {}, "learning-rate factor by path pattern (the first that matches)", gt=0
    )


@dataclass(frozen=True, kw_only=True)
class OptimizerSettings(ParamGroupSettings):
    """Shared by every optimizer: the learning rate over the run, gradient clipping, and the
    parameter groups."""

    lr: float = setting(1e-2, "learning rate (the peak, with a schedule)", gt=0)
    schedule: str = setting("constant", "the learning rate over trainer.steps", choices=SCHEDULES)
    warmup_steps: int = setting(0, "steps of linear warmup from 0 to lr", ge=0)
    final_lr_fraction: float = setting(
        0.0, "cosine, linear: the learning rate at trainer.steps as a fraction of lr", ge=0, le=1
    )
    clip_norm: float | None = setting(
        None, "clip the gradients to this global norm; null: no clipping", gt=0
    )

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Run by the config's validation with the whole config: the schedule must fit in the
        run's `trainer.steps` (see `check_against_trainer`)."""
        if cfg.get("optim") is not None and cfg.get("trainer") is not None:
            check_against_trainer(cfg.optim, cfg.trainer)


@dataclass(frozen=True, kw_only=True)
class DecaySettings(OptimizerSettings):
    """Shared by optimizers with a weight decay."""

    weight_decay: float = setting(1e-4, "decoupled weight decay", ge=0)
    decay_all: bool = setting(
        False, "decay every parameter; false: only kernels and embeddings (not biases or scales)"
    )


@declare("optim", "adam", builder="zoo.optim.optimizers:adam")
@dataclass(frozen=True, kw_only=True)
class AdamSettings(OptimizerSettings):
    """Adam (optax.adam)."""

    b1: float = setting(0.9, "decay of the first moment", ge=0, lt=1)
    b2: float = setting(0.999, "decay of the second moment", ge=0, lt=1)
    eps: float = setting(1e-8, "added to the denominator", gt=0)


@declare("optim", "adamw", builder="zoo.optim.optimizers:adamw")
@dataclass(frozen=True, kw_only=True)
class AdamWSettings(AdamSettings, DecaySettings):
    """Adam with decoupled weight decay (optax.adamw)."""


@declare("optim", "sgd", builder="zoo.optim.optimizers:sgd")
@dataclass(frozen=True, kw_only=True)
class SGDSettings(OptimizerSettings):
    """Stochastic gradient descent with momentum (optax.sgd)."""

    lr: float = setting(1e-1, "learning rate (the peak, with a schedule)", gt=0)
    momentum: float = setting(0.9, "momentum; 0: none", ge=0, lt=1)
    nesterov: bool = setting(False, "Nesterov momentum")


@declare("optim", "lion", builder="zoo.optim.optimizers:lion")
@dataclass(frozen=True, kw_only=True)
class LionSettings(DecaySettings):
    """Lion, the sign of an interpolated momentum (optax.lion); wants a smaller lr than adam."""

    lr: float = setting(3e-3, "learning rate (the peak, with a schedule)", gt=0)
    b1: float = setting(0.9, "interpolation of gradient and momentum in the update", ge=0, lt=1)
    b2: float = setting(0.99, "decay of the momentum", ge=0, lt=1)
    weight_decay: float = setting(1e-3, "decoupled weight decay", ge=0)


@declare("optim", "rmsprop", builder="zoo.optim.optimizers:rmsprop")
@dataclass(frozen=True, kw_only=True)
class RMSPropSettings(OptimizerSettings):
    """RMSProp (optax.rmsprop)."""

    lr: float = setting(1e-2, "learning rate (the peak, with a schedule)", gt=0)
    decay: float = setting(0.9, "decay of the squared gradients' average", ge=0, lt=1)
    eps: float = setting(1e-8, "added to the squared gradients' average", gt=0)
    momentum: float = setting(0.0, "momentum; 0: none", ge=0, lt=1)
    centered: bool = setting(False, "divide by the gradients' variance, not their second moment")


@declare("optim", "adafactor", builder="zoo.optim.optimizers:adafactor")
@dataclass(frozen=True, kw_only=True)
class AdafactorSettings(DecaySettings):
    """Adafactor, factored second moments (optax.adafactor)."""

    weight_decay: float = setting(0.0, "decoupled weight decay", ge=0)
    decay_rate: float = setting(0.8, "decay of the second moments: 1 - step**-decay_rate", gt=0)
    clipping_threshold: float | None = setting(
        1.0, "clip each update's root mean square to this; null: off", gt=0
    )
    multiply_by_parameter_scale: bool = setting(True, "scale steps by each parameter's RMS")
    factored: bool = setting(True, "factor the second moments of large matrices")
    min_dim_size_to_factor: int = setting(128, "factor only dimensions at least this big", ge=1)
    momentum: float = setting(0.0, "momentum; 0: none", ge=0, lt=1)
    eps: float = setting(1e-30, "added to the squared gradients", gt=0)


def check_against_trainer(optim: Any, trainer: Any) -> None:
    """The schedule must fit in the run: SettingError for a warmup longer than `trainer.steps`
    (or as long, for a decaying schedule, which would have no steps left to decay over)."""
    # .get: a run saved before schedules existed has none of these keys
    warmup, schedule = optim.get("warmup_steps", 0), optim.get("schedule", "constant")
    steps = trainer.get("steps", 0)
    if schedule != "constant" and warmup >= steps:
        raise SettingError(
            f"optim.warmup_steps={warmup} must be < trainer.steps={steps} with "
            f"optim.schedule={schedule}: the decay needs steps after the warmup"
        )
    if warmup > steps:
        raise SettingError(f"optim.warmup_steps={warmup} is longer than trainer.steps={steps}")
