"""Before a run writes anything: whether each chosen logger could write where it is told, and
whether its library is installed, each problem one ZooError line. A refused run leaves nothing
behind that would refuse the next one."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from omegaconf import DictConfig

from zoo.errors import ZooError
from zoo.reporting.logger_settings import EXTRAS, missing_library, run_path_problem
from zoo.reporting.run_context import run_context


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
    for name in chosen:
        if name in EXTRAS and importlib.util.find_spec(EXTRAS[name][0]) is None:
            raise missing_library(str(name))
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
