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
    """The config `zoo-<app> <overrides>` would run, composed and checked.

    Args:
        overrides: command-line overrides, e.g. `["model=mlp", "trainer.steps=500"]`.
        app: `train` or `eval`.

    Returns:
        The composed config, validated.

    Raises:
        ZooError: a bad override, key or value (one line), or a call inside a running Hydra app.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.app.compose_once import light_composition
    from zoo.app.hydra_errors import one_line
    from zoo.config.store import config_dir, register_configs
    from zoo.config.validate import validate

    if GlobalHydra.instance().is_initialized():
        raise ZooError("zoo.compose cannot run inside a Hydra app: pass the app's composed config")
    register_configs()
    try:
        with (
            light_composition(),
            initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=app),
        ):
            cfg = hydra_compose(config_name=app, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # ValueError: logger=null
        cause = f"\n{err.__cause__}" if err.__cause__ else ""
        raise ZooError(one_line(f"{err}{cause}", overrides)) from None
    validate(cfg, app)
    return cfg


def train(
    config: Sequence[str] | DictConfig = (), *, run_dir: str | os.PathLike
) -> dict[str, float]:
    """Train as `zoo-train` does, into `run_dir`.

    The directory gets the run's resolved `config.yaml`, so `zoo-eval run_dir=...` works on it.
    The process is left as it was: no signal handler stays, nothing ends it (a second Ctrl-C
    raises KeyboardInterrupt, where zoo-train stops at once).

    Args:
        config: overrides (`["model=mlp", "seed=3"]`) or a composed config; a composed config
            may hold Hydra's own `hydra` node (`compose(..., return_hydra_config=True)`): it is
            ignored.
        run_dir: the run's directory, created if missing.

    Returns:
        The last logged metrics, and `optimized_metric`, the best value of `trainer.monitor`.

    Raises:
        ZooError: a bad config, file or value, or a run that diverged (`Diverged`); one line.
        RunStopped: SIGTERM or Ctrl-C stopped the run after saving a checkpoint.
    """
    from zoo.config.validate import validate, without_hydra
    from zoo.training.run import train as train_run

    if isinstance(config, DictConfig):
        validate(config, "train")
        cfg = without_hydra(config)
    else:
        cfg = compose(config, "train")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return train_run(cfg, run_dir)
