"""The metric loggers a run can write to besides metrics.jsonl, each through its library's own
client: TensorBoard (tensorboardX), a CSV table, MLflow and Weights & Biases.

`open_loggers(cfg, run_dir, start)` opens those `cfg.logger` names; each then takes every log
point's record (`log`) and, at the end, `close(status, artifacts)`. A library is imported only
when its logger is chosen, so a run without loggers pays nothing for them. `check_loggers(cfg,
run_dir)` finds what would stop a logger from writing where it is told (a file where its folder
goes, a store under a file) before the run writes anything.

A run started by Hydra finds where it was started and which sweep it belongs to in its
`.hydra/hydra.yaml` (written by Hydra before the job runs, by whichever launcher): a sweep's jobs
are grouped by the sweep's directory (an MLflow tag `sweep`, the W&B `group`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import RunStopped, ZooError
from zoo.files import write_atomically
from zoo.job_status import sweep_dir_of
from zoo.logger_settings import run_path_problem
from zoo.metrics import read_metrics
from zoo.untrusted import load_yaml

log = logging.getLogger(__name__)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # how a run ended (MLflow's words)
RUN_IDS = ".loggers"  # <run dir>/.loggers/<logger>: the logger's run id, continued on resume


class MetricLogger(Protocol):
    def log(self, record: dict[str, float]) -> None: ...

    def close(self, status: str, artifacts: Sequence[Path]) -> None: ...


@dataclass(frozen=True)
class RunContext:
    """What the loggers name and group a run by."""

    run_dir: Path
    start_dir: Path  # where the command started: a relative path or store is read from there
    sweep_dir: Path | None = None  # the sweep's directory, for a job of a sweep
    overrides: list[str] = field(default_factory=list)  # the command line's overrides

    @property
    def name(self) -> str:
        return _relative(self.run_dir, self.start_dir)

    @property
    def group(self) -> str | None:
        return None if self.sweep_dir is None else _relative(self.sweep_dir, self.start_dir)


def _relative(path: Path, base: Path) -> str:
    path = path.resolve()
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()


def run_context(run_dir: str | os.PathLike) -> RunContext:
    """The run's context from `<run_dir>/.hydra/hydra.yaml` when Hydra started it, else (a run
    from Python, `zoo.train`) the current directory and no sweep."""
    run_dir = Path(run_dir).resolve()
    saved = run_dir / ".hydra" / "hydra.yaml"
    if not saved.is_file():
        return RunContext(run_dir, Path.cwd().resolve())
    try:
        hydra = load_yaml(saved).hydra  # as hostile: no aliases, bounded
        sweep_dir = None
        if str(hydra.mode) == "MULTIRUN":
            sweep_dir = sweep_dir_of(run_dir, str(hydra.sweep.subdir))
        overrides = [str(o) for o in hydra.overrides.task]
        start_dir = Path(str(hydra.runtime.cwd)).resolve()
    except (ZooError, ValueError, OmegaConfBaseException):  # not as Hydra writes it: no context
        return RunContext(run_dir, Path.cwd().resolve())
    return RunContext(run_dir, start_dir, sweep_dir, overrides)


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """`{"model.hidden": 8, "optim.name": "adam", ...}`: the resolved config's leaves by path."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def _missing(logger: str, package: str) -> ZooError:
    return ZooError(
        f"logger={logger} needs {package}: pip install 'zoo[{logger}]' (make install includes it)"
    )


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


# --- the loggers -------------------------------------------------------------------------------


class TensorBoard:
    """Scalars of every record into `<run dir>/<subdir>/` through tensorboardX."""

    def __init__(self, settings: DictConfig, context: RunContext, cfg: DictConfig, start: int):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboardX") from None
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
            raise _missing("mlflow", "mlflow") from None
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
            raise _missing("wandb", "wandb") from None
        with _run_id(context.run_dir, "wandb", start > 0) as held:
            try:
                self.run = wandb.init(
                    project=settings.project,
                    entity=settings.entity,
                    group=settings.group or context.group,
                    name=context.name,
                    dir=str(context.run_dir),
                    mode=settings.mode,
                    config=OmegaConf.to_container(cfg, resolve=True),
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


# --- before the run writes anything -------------------------------------------------------------


def _blocked(path: Path, folder: bool) -> str | None:
    """Why `path` cannot become a file (or with `folder`, a folder): what is in its way."""
    if path.exists() and path.is_dir() != folder:
        return f"{path} is a {'file' if folder else 'folder'}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{path} lies under the file {parent}"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{parent} cannot be written"
            return None
    return None


def _inside(path: Path, run_dir: Path) -> bool:
    """Whether `path` stays in `run_dir` once links are followed (a link the user made there
    could lead a logger's file into another run)."""
    return path.resolve().is_relative_to(run_dir.resolve())


def _on_run_files(store: Path, run_dir: Path) -> str | None:
    """Why a store given by URI would land on what the run writes itself (None: it would not)."""
    store = Path(os.path.abspath(store))
    if not store.is_relative_to(run_dir):
        return None
    relative = store.relative_to(run_dir).as_posix()
    if relative == ".":
        return f"{store} is the run directory itself"
    problem = run_path_problem(relative)
    return None if problem is None else f"{store} is in the run directory: {problem}"


def local_mlflow_store(uri: str | None, start_dir: Path) -> Path | None:
    """The folder (a file store) or database file (sqlite) MLflow writes for `uri` on this
    machine: `<start_dir>/mlruns` for null; None for a remote store (http, databricks, ...)."""
    if uri is None:
        return start_dir / "mlruns"
    if uri.startswith("sqlite:///"):
        return start_dir / uri.removeprefix("sqlite:///")  # an absolute path stays as it is
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return start_dir / unquote(urlparse(uri).path)
    if "://" not in uri:  # a plain path: MLflow's file store
        return start_dir / uri
    return None


def check_loggers(cfg: DictConfig, run_dir: str | os.PathLike) -> None:
    """Raise a ZooError, one line, when a chosen logger could not write where it is told: the
    CSV table or TensorBoard's folder blocked by a file, a folder or a link out of the run
    directory; MLflow's local store (its folder or database) under a file or in a folder that
    cannot be written. Run before the run writes anything, so a refused run leaves nothing behind
    that would refuse the next one."""
    chosen = cfg.get("logger") or {}
    run_dir = Path(os.path.abspath(run_dir))
    places = {
        "csv": ("filename", False),
        "tensorboard": ("subdir", True),
        "wandb": (None, True),
    }
    for name, settings in chosen.items():
        if name in places:
            key, folder = places[name]
            relative = settings[key] if key else "wandb"
            path = run_dir / relative
            problem = _blocked(path, folder)
            if problem is None and not _inside(path, run_dir):
                problem = f"{path} leads out of the run directory {run_dir}"
            if problem:
                setting = f"logger.{name}.{key}={relative}" if key else f"logger={name}"
                raise ZooError(f"{setting}: {problem}")
        elif name == "mlflow":
            uri = settings.get("tracking_uri")
            store = local_mlflow_store(uri, run_context(run_dir).start_dir)
            database = uri is not None and uri.startswith("sqlite:")
            problem = None if store is None else _blocked(store, folder=not database)
            if problem is None and uri is not None and store is not None:
                problem = _on_run_files(store, run_dir)
            if problem:
                what = "null (the local store)" if uri is None else uri
                raise ZooError(f"logger.mlflow.tracking_uri={what}: {problem}")


LOGGERS: dict[str, type] = {
    "tensorboard": TensorBoard,
    "csv": CSV,
    "mlflow": MLflow,
    "wandb": Wandb,
}


def open_loggers(cfg: DictConfig, run_dir: str | os.PathLike, start: int = 0) -> list[MetricLogger]:
    """The loggers `cfg.logger` names, started for the run in `run_dir` at step `start`."""
    chosen = cfg.get("logger") or {}
    context = run_context(run_dir) if chosen else None
    opened: list[MetricLogger] = []
    try:
        for name, settings in chosen.items():
            if name not in LOGGERS:
                raise ZooError(f"logger={name} is unknown; valid: {', '.join(LOGGERS)}")
            opened.append(LOGGERS[name](settings, context, cfg, start))
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
