"""The metric loggers a run can write to besides metrics.jsonl, each through its library's own
client: TensorBoard (tensorboardX), a CSV table, MLflow and Weights & Biases.

`open_loggers(cfg, run_dir, start)` opens those `cfg.logger` names, each the `logger` group's
component of that name in the one registry (an installed package adds its own through the
`zoo.loggers` entry points); each then takes every log point's record (`log`) and, at the end,
`close(status, artifacts)`. A library is imported only when its logger is chosen, so a run
without loggers pays nothing for them. zoo/reporting/logger_checks.py checks, before the run
writes anything, that each could write where it is told.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from zoo.config import registry
from zoo.config.plain import flat_config, to_plain
from zoo.errors import RunStopped, ZooError
from zoo.files import write_atomically
from zoo.reporting.logger_settings import missing_library
from zoo.reporting.metrics_log import read_metrics
from zoo.reporting.run_context import RunContext, run_context

log = logging.getLogger(__name__)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # how a run ended (MLflow's words)
RUN_IDS = ".loggers"  # <run dir>/.loggers/<logger>: the logger's run id, continued on resume


class MetricLogger(Protocol):
    """What a logger does: take each log point's record, then close with how the run ended and
    the files it keeps (loss.png, config.yaml, model/)."""

    def log(self, record: dict[str, float]) -> None: ...

    def close(self, status: str, artifacts: Sequence[Path]) -> None: ...


@contextmanager
def _run_id(run_dir: Path, logger: str, resume: bool) -> Iterator[dict[str, str | None]]:
    """The run id `logger` used for this run directory when resuming (else None); the id set in
    the block is kept for the next resume."""
    path = run_dir / RUN_IDS / logger
    held: dict[str, str | None] = {"id": None}
    if resume and path.is_file():
        held["id"] = path.read_text().strip() or None
    yield held
    if held["id"]:
        path.parent.mkdir(exist_ok=True)
        write_atomically(path, str(held["id"]))


class TensorBoard:
    """Scalars of every record into `<run dir>/<subdir>/` through tensorboardX."""

    def __init__(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise missing_library("tensorboard") from None
        log_dir = context.run_dir / settings.subdir
        with _writing("tensorboard"):
            self.writer = SummaryWriter(logdir=str(log_dir))
        log.info("TensorBoard events in %s (tensorboard --logdir %s)", log_dir, log_dir)

    def log(self, record: dict[str, float]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, step)

    def close(self, status: str, artifacts: Sequence[Path]) -> None:
        self.writer.close()


class CSV:
    """`<run dir>/<filename>`: a header of every metric seen so far, then one row per log point;
    on resume it starts again from metrics.jsonl, so the two always agree."""

    def __init__(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        self.path = context.run_dir / settings.filename
        self.rows = read_metrics(context.run_dir / "metrics.jsonl")
        self.columns: list[str] = []
        with _writing("csv"):
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a/b.csv: in folder a/
            self._rewrite()

    def _rewrite(self) -> None:
        self.columns = list(dict.fromkeys(["step", *(k for row in self.rows for k in row)]))
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomically(self.path, text.getvalue())

    def log(self, record: dict[str, float]) -> None:
        self.rows.append(record)
        if not set(record) <= set(self.columns):  # a new metric: a new header
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, lineterminator="\n").writerow(record)

    def close(self, status: str, artifacts: Sequence[Path]) -> None:
        pass


def default_mlflow_uri(start_dir: Path) -> str:
    """The local store in `<start_dir>/mlruns/`: an SQLite database, MLflow's default backend
    (its file store is deprecated), with the artifacts beside it."""
    return f"sqlite:///{start_dir / 'mlruns' / 'mlflow.db'}"


class MLflow:
    """An MLflow run in `settings.experiment`: params, metrics at their step, and artifacts."""

    def __init__(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        try:
            from mlflow.exceptions import MlflowException
        except ImportError:
            raise missing_library("mlflow") from None
        try:
            self._start(settings, context, cfg, start)
        except MlflowException as err:  # e.g. a tracking_uri it cannot use
            raise ZooError(f"logger=mlflow: {str(err).strip().splitlines()[0]}") from None

    def _start(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        # alembic logs every step of creating the store's tables at INFO.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        uri, artifacts = settings.tracking_uri, None
        if uri is None:
            store = context.start_dir / "mlruns"
            with _writing("mlflow"):
                store.mkdir(exist_ok=True)
            uri, artifacts = default_mlflow_uri(context.start_dir), (store / "artifacts").as_uri()
        with _store_lock(context.start_dir if settings.tracking_uri is None else None):
            self.client = MlflowClient(uri)  # creates a new store's tables
            experiment_id = self._experiment(settings.experiment, artifacts)
        self.operations: list[Any] = []
        with _run_id(context.run_dir, "mlflow", start > 0) as held:
            if held["id"]:
                self.run_id = held["id"]
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                tags = {"zoo.run_dir": str(context.run_dir)}
                if context.group:
                    tags["sweep"] = context.group
                if context.overrides:
                    tags["zoo.overrides"] = " ".join(context.overrides)
                run = self.client.create_run(experiment_id, run_name=context.name, tags=tags)
                self.run_id = held["id"] = run.info.run_id
                params = [
                    Param(key, str(value)[:MAX_PARAM_VAL_LENGTH])
                    for key, value in flat_config(cfg).items()
                ]
                self.client.log_batch(self.run_id, params=params)
        log.info(
            "MLflow run %s (experiment %s) in %s (mlflow ui --backend-store-uri %s)",
            self.run_id,
            settings.experiment,
            uri,
            uri,
        )

    def _experiment(self, name: str, artifacts: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifacts)

    def log(self, record: dict[str, float]) -> None:
        from mlflow.entities import Metric

        step, now = int(record["step"]), int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in record.items() if k != "step"]
        # Queued: the store's writes happen beside the loop, not in it.
        self.operations.append(self.client.log_batch(self.run_id, metrics, synchronous=False))

    def close(self, status: str, artifacts: Sequence[Path]) -> None:
        for operations in self.operations:
            operations.wait()
        for path in artifacts:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


@contextmanager
def _store_lock(start_dir: Path | None) -> Iterator[None]:
    """Serialize the jobs of a parallel sweep while they create the local store and experiment."""
    if start_dir is None:
        yield
        return
    import fcntl

    with open(start_dir / "mlruns" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Wandb:
    """A W&B run with its files in `<run dir>/wandb/`; offline by default."""

    def __init__(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        try:
            import wandb
        except ImportError:
            raise missing_library("wandb") from None
        with _run_id(context.run_dir, "wandb", start > 0) as held:
            try:
                self.run = wandb.init(
                    project=settings.project,
                    entity=settings.entity,
                    group=settings.group or context.group,
                    name=context.name,
                    dir=str(context.run_dir),
                    mode=settings.mode,
                    config=to_plain(cfg),
                    id=held["id"],
                    resume="allow" if held["id"] else None,
                    # Hydra's logging already keeps the console in train.log.
                    settings=wandb.Settings(console="off", quiet=True),
                )
            except wandb.Error as err:  # e.g. mode=online without an account
                raise ZooError(f"logger=wandb: {str(err).splitlines()[0]}") from None
            held["id"] = self.run.id
        log.info("W&B run %s (%s) in %s", self.run.id, settings.mode, self.run.dir)

    def log(self, record: dict[str, float]) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def close(self, status: str, artifacts: Sequence[Path]) -> None:
        self.run.finish(exit_code=0 if status == FINISHED else 1)


@contextmanager
def _writing(logger: str) -> Iterator[None]:
    """A file the logger cannot write (a permission, a full disk) as one ZooError."""
    try:
        yield
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        raise ZooError(f"logger={logger} cannot write{where}: {err.strerror or err}") from None


def open_loggers(cfg: DictConfig, run_dir: str | os.PathLike, start: int = 0) -> list[MetricLogger]:
    """The loggers `cfg.logger` names, started for the run in `run_dir` at step `start`."""
    chosen = cfg.get("logger") or {}
    context = run_context(run_dir) if chosen else None
    opened: list[MetricLogger] = []
    try:
        for name, settings in chosen.items():
            try:
                logger = registry.builder("logger", name)
            except registry.UnknownComponent:
                valid = ", ".join(registry.names("logger"))
                raise ZooError(f"logger={name} is unknown; valid: {valid}") from None
            opened.append(logger(settings, context, cfg, start))
    except BaseException:
        for logger in opened:
            logger.close(FAILED, [])
        raise
    return opened


def status_of(exc: BaseException | None) -> str:
    """How a run that raised `exc` (None: none) ended, in MLflow's words."""
    if exc is None:
        return FINISHED
    return KILLED if isinstance(exc, RunStopped | KeyboardInterrupt) else FAILED
