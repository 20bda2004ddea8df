"""The logger group's settings, declared once per logger (no imports of the loggers' libraries):
`logger=tensorboard`, `logger=csv`, `logger=mlflow`, `logger=wandb`, or several at once,
`logger=[tensorboard,mlflow,wandb]`. zoo/loggers.py writes through each library's client."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.declarations import declare, setting

WANDB_MODES = ("offline", "online", "disabled")


@declare("logger", "tensorboard")
@dataclass(frozen=True)
class TensorBoardSettings:
    """TensorBoard event files of every logged metric (tensorboardX)."""

    subdir: str = setting("tensorboard", "event files go to <run dir>/<subdir>/")


@declare("logger", "csv")
@dataclass(frozen=True)
class CSVSettings:
    """Every logged metric as a table, one row per log point (like Lightning's CSVLogger)."""

    filename: str = setting("metrics.csv", "the table goes to <run dir>/<filename>")


@declare("logger", "mlflow")
@dataclass(frozen=True)
class MLflowSettings:
    """An MLflow run: the flattened config as params, every metric at its step, and at the end
    loss.png, config.yaml and the model as artifacts."""

    tracking_uri: str | None = setting(
        None, "null: a local store, sqlite:///<dir the command started in>/mlruns/mlflow.db"
    )
    experiment: str = setting("zoo", "the MLflow experiment the run belongs to")


@declare("logger", "wandb")
@dataclass(frozen=True)
class WandbSettings:
    """A Weights & Biases run, its files in <run dir>/wandb/ (offline: `wandb sync` uploads)."""

    mode: str = setting("offline", "offline needs no network or account", choices=WANDB_MODES)
    project: str = setting("zoo", "the W&B project")
    entity: str | None = setting(None, "the W&B user or team; null: the account's default")
    group: str | None = setting(None, "null: the sweep's directory for a sweep's jobs, else none")
