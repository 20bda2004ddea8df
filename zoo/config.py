"""Typed config schemas (Hydra structured configs) and the value checks run before any JAX work.

Kept free of JAX imports: the Hydra plugin imports this module at every Hydra app's start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from zoo.errors import ZooError

MODEL_TARGET = "zoo.create_model"
TASKS = ("auto", "regression", "classification")
EVAL_MODES = ("compare", "summary")


@dataclass
class DeepNestedConfig:
    _target_: str = MODEL_TARGET
    name: str = "deep_nested"
    in_features: int = 4
    hidden: int = 8
    depth: int = 1
    activation: str = "relu"
    out_features: int | None = None


@dataclass
class MLPConfig:
    _target_: str = MODEL_TARGET
    name: str = "mlp"
    in_features: int = 4
    widths: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "relu"
    dropout: float = 0.0
    out_features: int | None = 1


@dataclass
class TransformerConfig:
    _target_: str = MODEL_TARGET
    name: str = "transformer"
    vocab_size: int = 16
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: int = 4
    max_len: int = 64
    dropout: float = 0.0
    causal: bool = False
    out_features: int | None = None


@dataclass
class TeacherDataConfig:
    name: str = "teacher"
    in_features: int = 4
    n_train: int = 2048
    n_val: int = 512
    noise: float = 0.01
    seed: int = 1234
    teacher_seed: int = 4321
    teacher_depth: int = 1
    teacher_activation: str = "relu"


@dataclass
class SplitDataConfig:
    """Shared by datasets without a given validation split: hold out `val_fraction` of the rows,
    chosen by a permutation from `seed`; standardize inputs with the train rows' statistics."""

    name: str = MISSING
    task: str = "auto"  # auto | regression | classification (auto: integer labels -> classes)
    val_fraction: float = 0.2
    seed: int = 0
    standardize: bool = True


@dataclass
class NpzDataConfig(SplitDataConfig):
    name: str = "npz"
    path: str | None = None


@dataclass
class CsvDataConfig(SplitDataConfig):
    name: str = "csv"
    path: str | None = None
    target: str | None = None


@dataclass
class DigitsDataConfig(SplitDataConfig):
    name: str = "digits"
    task: str = "classification"


@dataclass
class SequenceDataConfig:
    name: str = "sequence"
    rule: str = "reverse"
    vocab_size: int = 16
    length: int = 12
    n_train: int = 8192
    n_val: int = 1024
    seed: int = 1234


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-2
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 1e-4


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 1e-1
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class TensorBoardConfig:
    name: str = "tensorboard"
    subdir: str = "tensorboard"  # event files go to <run dir>/<subdir>/


@dataclass
class TrainerConfig:
    steps: int = 2000
    batch_size: int = 256
    eval_every: int = 500
    log_every: int = 100
    ckpt_every: int = 500
    keep_checkpoints: int = 3
    resume: bool = False
    # Where checkpoints go: null is <run dir>/checkpoints. Several processes need one they share.
    ckpt_dir: str | None = None
    # Data parallel over this many local devices per process: "auto" (all of them) or a number.
    devices: str = "auto"
    # Join a multi-host run with jax.distributed.initialize(): true, false, or null to join when
    # launched by srun / mpirun with several tasks. The three below are read by JAX from
    # SLURM / Open MPI when null; elsewhere set them (the coordinator is process 0's host:port).
    distributed: bool | None = None
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclass
class TrainConfig:
    seed: int = 0
    model: Any = None
    data: Any = None
    optim: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None  # null, or a logger group choice such as logger=tensorboard


@dataclass
class EvalConfig:
    seed: int = 0
    model: Any = None
    data: Any = None
    x: list[float] | None = None
    input_seed: int = 0
    run_dir: str | None = None
    mode: str = "compare"  # compare | summary


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; the YAML files extend them by these names. Also
    registers the zoo's resolvers (`${zoo.unique:}` in the run directory's name)."""
    from zoo.rundir import register_resolvers

    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="zoo_train_schema", node=TrainConfig)
    cs.store(name="zoo_eval_schema", node=EvalConfig)
    cs.store(group="model", name="zoo_deep_nested_schema", node=DeepNestedConfig)
    cs.store(group="data", name="zoo_teacher_schema", node=TeacherDataConfig)
    cs.store(group="data", name="zoo_npz_schema", node=NpzDataConfig)
    cs.store(group="data", name="zoo_csv_schema", node=CsvDataConfig)
    cs.store(group="data", name="zoo_digits_schema", node=DigitsDataConfig)
    cs.store(group="model", name="zoo_mlp_schema", node=MLPConfig)
    cs.store(group="model", name="zoo_transformer_schema", node=TransformerConfig)
    cs.store(group="data", name="zoo_sequence_schema", node=SequenceDataConfig)
    cs.store(group="optim", name="zoo_adam_schema", node=AdamConfig)
    cs.store(group="optim", name="zoo_adamw_schema", node=AdamWConfig)
    cs.store(group="optim", name="zoo_sgd_schema", node=SGDConfig)
    cs.store(group="logger", name="zoo_tensorboard_schema", node=TensorBoardConfig)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and v >= low), f"an integer >= {low}"


def _null_or_int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v is None or (isinstance(v, int) and v >= low)), f"null or >= {low}"


def _positive_finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


def _devices(v: Any) -> bool:
    return v == "auto" or (isinstance(v, str) and v.isdigit() and int(v) >= 1)


def _activation(v: Any) -> bool:
    from zoo.layers import ACTIVATIONS

    return v in ACTIVATIONS


def _activation_names() -> str:
    from zoo.layers import ACTIVATIONS

    return "one of " + ", ".join(ACTIVATIONS)


def _sequence_rule(v: Any) -> bool:
    from zoo.data import SEQUENCE_RULES

    return v in SEQUENCE_RULES


def _sequence_rule_names() -> str:
    from zoo.data import SEQUENCE_RULES

    return "one of " + ", ".join(SEQUENCE_RULES)


def _dropout_rate(v: Any) -> bool:
    return isinstance(v, int | float) and 0 <= v < 1


# key -> (check, what a valid value is). Keys absent from a config are skipped.
RULES: dict[str, tuple[Callable[[Any], bool], str | Callable[[], str]]] = {
    "seed": _int_at_least(0),
    "input_seed": _int_at_least(0),
    "mode": (lambda v: v in EVAL_MODES, "one of " + ", ".join(EVAL_MODES)),
    "model.in_features": _int_at_least(1),
    "model.hidden": _int_at_least(1),
    "model.depth": _int_at_least(1),
    "model.out_features": _null_or_int_at_least(1),
    "model.activation": (_activation, _activation_names),
    "data.in_features": _int_at_least(1),
    "data.n_train": _int_at_least(1),
    "data.n_val": _int_at_least(1),
    "data.noise": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "data.teacher_depth": _int_at_least(1),
    "data.teacher_activation": (_activation, _activation_names),
    "data.path": (lambda v: isinstance(v, str) and v != "", "a file's path, e.g. data.path=FILE"),
    "data.target": (lambda v: isinstance(v, str) and v != "", "a column name, data.target=NAME"),
    "data.task": (lambda v: v in TASKS, "one of " + ", ".join(TASKS)),
    "data.val_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "data.seed": _int_at_least(0),
    "optim.lr": (_positive_finite, "a finite number > 0"),
    "optim.b1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optim.b2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optim.eps": (_positive_finite, "a finite number > 0"),
    "optim.weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "optim.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.widths": (
        lambda v: len(v) >= 1 and all(isinstance(w, int) and w >= 1 for w in v),
        "a non-empty list of integers >= 1",
    ),
    "model.dropout": (_dropout_rate, "a number in [0, 1)"),
    "model.vocab_size": _int_at_least(1),
    "model.d_model": _int_at_least(1),
    "model.num_heads": _int_at_least(1),
    "model.num_layers": _int_at_least(1),
    "model.mlp_ratio": _int_at_least(1),
    "model.max_len": _int_at_least(1),
    "data.rule": (_sequence_rule, _sequence_rule_names),
    "data.vocab_size": _int_at_least(2),
    "data.length": _int_at_least(1),
    "trainer.steps": _int_at_least(0),
    "trainer.batch_size": _int_at_least(1),
    "trainer.eval_every": _int_at_least(1),
    "trainer.log_every": _int_at_least(1),
    "trainer.ckpt_every": _int_at_least(1),
    "trainer.keep_checkpoints": _int_at_least(1),
    "trainer.devices": (_devices, "auto or an integer >= 1"),
    "trainer.num_processes": _null_or_int_at_least(1),
    "trainer.process_id": _null_or_int_at_least(0),
    "trainer.coordinator_address": (
        lambda v: v is None or (isinstance(v, str) and v.rpartition(":")[2].isdigit()),
        "null or host:port",
    ),
}


def validate(cfg: DictConfig) -> None:
    """Check every known value; raise ZooError naming the first bad key and its value."""
    for key, (check, requirement) in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default="__absent__")
        except InterpolationResolutionError as err:  # e.g. data=teacher with a token model
            raise ZooError(f"{key} cannot be resolved: {str(err).splitlines()[0]}") from None
        if isinstance(value, str) and value == "__absent__":
            continue
        if not check(value):
            wanted = requirement() if callable(requirement) else requirement
            raise ZooError(f"{key}={value!r} is invalid: must be {wanted}")
    target = OmegaConf.select(cfg, "model._target_")
    if target is not None and target != MODEL_TARGET:
        raise ZooError(
            f"model._target_={target!r} is not allowed: zoo builds models through its registry "
            f"({MODEL_TARGET}) with model.name"
        )
