"""The logger group's settings, declared once per logger (no imports of the loggers' libraries):
`logger=tensorboard`, `logger=csv`, `logger=mlflow`, `logger=wandb`, or several at once,
`logger=[tensorboard,mlflow,wandb]`. zoo/reporting/loggers.py writes through each library's
client.

Where a logger writes in the run directory is checked here, with the other values: inside the run
directory, and never a name the run itself writes (a logger must not replace metrics.jsonl or
another run's results).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zoo.config.fields import setting
from zoo.config.plain import to_plain
from zoo.config.registry import declare
from zoo.config.types import SettingError
from zoo.errors import ZooError

WANDB_MODES = ("offline", "online", "disabled")

# What the run (or a sweep whose job directory is the sweep's) writes at the top of its
# directory, compared case-blind (a case-insensitive file system is one name for both):
# zoo.training.run_dir's RESULTS, SWEEP_RESULTS and SCAFFOLDING, zoo.training.run's RUN_CONFIG,
# zoo.training.init_from's INIT_REPORT, the profile, zoo.app.job_status's files,
# zoo.reporting.loggers' RUN_IDS and W&B's own folder,
# the MLflow store when the run starts in its own directory, and what Optuna and submitit keep in
# a sweep's. Hidden names (.hydra, the locks, unfinished saves) and Hydra's job log (*.log) are
# refused as such. A test keeps this list in step with those modules.
RUN_NAMES = frozenset(
    {
        "metrics.jsonl",
        "model",
        "best",
        "checkpoints",
        "loss.png",
        "summary.csv",
        "sweep.png",
        "config.yaml",
        "init_report.json",
        "profile",
        "status.json",
        "traceback.txt",
        "wandb",
        "mlruns",
        "optimization_results.yaml",
        "sharding.json",
    }
)
MAX_NAME_BYTES = 255  # a file name's limit on Linux and macOS file systems
# logger -> (the module its client needs, the extra of pyproject.toml that installs it)
EXTRAS = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


def missing_library(logger: str) -> ZooError:
    """The one line for a chosen logger whose library is not installed: the extra to install."""
    module, extra = EXTRAS[logger]
    return ZooError(
        f"logger={logger} needs {module}: pip install 'zoo[{extra}]' (make install includes it)"
    )


def run_path_problem(value: Any) -> str | None:
    """What is wrong with `value` as a path relative to the run directory (None: nothing): it
    must stay inside (no absolute path, no `..`), have no empty, `.` or hidden part, and not take
    a name the run itself writes."""
    if not isinstance(value, str) or not value.strip():
        return "must name a path inside the run directory"
    parts = value.split("/")
    if value.startswith(("/", "~")) or any(not p or p.startswith(".") for p in parts):
        return (
            "must be a path inside the run directory: no absolute path or ~, and no empty, '.', "
            "'..' or hidden part"
        )
    too_long = any(len(p.encode(errors="surrogateescape")) > MAX_NAME_BYTES for p in parts)
    if "\0" in value or too_long:
        return f"must be a path of names of at most {MAX_NAME_BYTES} bytes, without NUL"
    top = parts[0]
    if top.casefold() in RUN_NAMES or top.casefold().endswith(".log"):
        return f"the run itself writes {top!r} there; choose another name"
    return None


def _check_run_path(key: str, value: Any) -> None:
    problem = run_path_problem(value)
    if problem is not None:
        raise SettingError(f"{key}={value!r} is invalid: {problem}")


def check_destinations(loggers: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise SettingError when two chosen loggers would write the same path: the CSV file where
    TensorBoard's folder is (or above it). `loggers`: each chosen logger's settings by name."""
    table = (loggers.get("csv") or {}).get("filename")
    events = (loggers.get("tensorboard") or {}).get("subdir")
    if not isinstance(table, str) or not isinstance(events, str):
        return
    if (events + "/").casefold().startswith(table.casefold() + "/"):
        raise SettingError(
            f"logger.csv.filename={table!r} and logger.tensorboard.subdir={events!r} collide: "
            "the table would be where TensorBoard's folder is; choose another for either"
        )


@declare("logger", "tensorboard", builder="zoo.reporting.loggers:TensorBoard")
@dataclass(frozen=True)
class TensorBoardSettings:
    """TensorBoard event files of every logged metric (tensorboardX)."""

    subdir: str = setting("tensorboard", "event files go to <run dir>/<subdir>/")

    def __post_init__(self) -> None:
        _check_run_path("logger.tensorboard.subdir", self.subdir)


@declare("logger", "csv", builder="zoo.reporting.loggers:CSV")
@dataclass(frozen=True)
class CSVSettings:
    """Every logged metric as a table, one row per log point (like Lightning's CSVLogger)."""

    filename: str = setting(
        "metrics.csv", "the table goes to <run dir>/<filename> (a/b.csv: in folder a/)"
    )

    def __post_init__(self) -> None:
        _check_run_path("logger.csv.filename", self.filename)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Run by the config's validation with the whole config: the table and TensorBoard's
        folder must not collide (`check_destinations`)."""
        check_destinations(to_plain(cfg.get("logger")) or {})


@declare("logger", "mlflow", builder="zoo.reporting.loggers:MLflow")
@dataclass(frozen=True)
class MLflowSettings:
    """An MLflow run: the flattened config as params, every metric at its step, and at the end
    loss.png, config.yaml and the model as artifacts."""

    tracking_uri: str | None = setting(
        None, "null: a local store, sqlite:///<dir the command started in>/mlruns/mlflow.db"
    )
    experiment: str = setting("zoo", "the MLflow experiment the run belongs to")

    def __post_init__(self) -> None:
        if self.tracking_uri is not None and not self.tracking_uri.strip():
            raise SettingError(
                "logger.mlflow.tracking_uri='' is invalid: must be null (the local store) or a URI"
            )


@declare("logger", "wandb", builder="zoo.reporting.loggers:Wandb")
@dataclass(frozen=True)
class WandbSettings:
    """A Weights & Biases run, its files in <run dir>/wandb/ (offline: `wandb sync` uploads)."""

    mode: str = setting("offline", "offline needs no network or account", choices=WANDB_MODES)
    project: str = setting("zoo", "the W&B project")
    entity: str | None = setting(None, "the W&B user or team; null: the account's default")
    group: str | None = setting(None, "null: the sweep's directory for a sweep's jobs, else none")
