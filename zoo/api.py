"""Runs from Python: the config the command line would compose, and training into a directory.

import zoo
metrics = zoo.train(["model=mlp", "trainer.steps=500"], run_dir="runs/mlp")
# then: zoo-eval run_dir=runs/mlp
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from zoo.errors import ZooError


def compose(overrides: Sequence[str] = (), app: str = "train") -> DictConfig:
    """The config `zoo-<app> <overrides>` would run (app: train or eval), checked: ZooError names
    a bad override, key or value."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.config import config_dir, register_configs, validate

    if GlobalHydra.instance().is_initialized():
        raise ZooError("zoo.compose cannot run inside a Hydra app: pass the app's composed config")
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=app):
            cfg = hydra_compose(config_name=app, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # ValueError: logger=null
        from zoo.cli import one_line

        cause = f"\n{err.__cause__}" if err.__cause__ else ""
        raise ZooError(one_line(f"{err}{cause}", overrides)) from None
    validate(cfg, app)
    return cfg


def train(
    config: Sequence[str] | DictConfig = (), *, run_dir: str | os.PathLike
) -> dict[str, float]:
    """Train as `zoo-train` does, from overrides (`["model=mlp", "seed=3"]`) or a composed config,
    into `run_dir`; return the last logged metrics. The directory gets the run's resolved
    `config.yaml`, so `zoo-eval run_dir=...` works on it. A composed config may hold Hydra's own
    `hydra` node (`compose(..., return_hydra_config=True)`): it is ignored."""
    from zoo.config import validate, without_hydra
    from zoo.training import train as train_run

    if isinstance(config, DictConfig):
        validate(config, "train")
        cfg = without_hydra(config)
    else:
        cfg = compose(config, "train")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return train_run(cfg, run_dir)
