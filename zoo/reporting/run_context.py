"""What the loggers name and group a run by: where it was started and which sweep it belongs to.

A run started by Hydra finds both in its `.hydra/hydra.yaml` (written by Hydra before the job
runs, by whichever launcher): a sweep's jobs are grouped by the sweep's directory (an MLflow tag
`sweep`, the W&B `group`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from zoo.errors import ZooError
from zoo.untrusted import load_yaml


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


def sweep_dir_of(job_dir: str | Path, subdir: str) -> Path:
    """The sweep's directory from one job's: `hydra.sweep.subdir` (e.g. `3`, `lr/3`) is the
    job's path under it."""
    job_dir = Path(job_dir)
    depth = len(Path(subdir).parts)
    return job_dir.parents[depth - 1] if depth else job_dir
