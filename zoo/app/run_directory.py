"""The run directory's Hydra callback: zoo-train claims `hydra.run.dir` (a sweep:
`hydra.sweep.dir`) before Hydra writes into it, and removes a directory it made when the run
ended before writing any result.

Hydra's `run_job` creates the run directory, opens the job's log file and writes `.hydra/` before
any callback's `on_job_start` or the task function. So the claim is made in `on_run_start` (and
`on_multirun_start` for a sweep's directory), which Hydra calls before `run_job`: a second run
into a directory that is in use, or that holds an earlier run's results without
`trainer.resume=true`, exits there with one line, before Hydra has touched anything of the first
run. `train()` claims its directories again (zoo/training/run_dir.py: the lock is re-entrant
within a process), which covers library callers, the jobs of a sweep (each in its own process
with some launchers) and a shared `trainer.ckpt_dir`, whose lock needs the process index known
only after distributed start.

Kept free of JAX imports: Hydra builds its callbacks at every start of train.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError
from zoo.training.run_dir import (
    LOCK,
    SCAFFOLDING,
    acquire,
    lock_name,
    make_directory,
    only_locks,
    refuse_a_file_in_the_way,
    refuse_anothers_directory,
    refuse_earlier_results,
    release,
    sweep_results,
)

# (rank, number of tasks): what SLURM and Open MPI tell each process of a launch.
RANK_VARIABLES = (
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)

_created: list[Path] = []  # the run directory this process made, then the parents it made


def launch_rank(config: DictConfig) -> int | None:
    """This process's index among a run's processes, as far as it is known before JAX starts:
    `trainer.process_id`, or the rank SLURM or Open MPI gave it; None for a single process."""
    explicit = OmegaConf.select(config, "trainer.process_id", default=None)
    if explicit is not None:
        return int(explicit)
    env = os.environ
    for rank, size in RANK_VARIABLES:
        if env.get(rank, "").isdigit() and env.get(size, "1").isdigit() and int(env[size]) > 1:
            return int(env[rank])
    return None


def discard_if_unused() -> None:
    """Remove the run directory this process created, and the parents it created, when the run
    ended (refused or failed) before writing any result: only Hydra's `.hydra/`, the locks (a
    `checkpoints/` of locks too) and the job's log are there. Anything else there keeps it."""
    if not _created:
        return
    run_dir, *parents = _created
    _created.clear()
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return
    for entry in entries:
        unused = (
            entry.name in SCAFFOLDING
            or entry.name.startswith(LOCK)
            or (entry.suffix == ".log" and entry.is_file())
            or (entry.name == "checkpoints" and only_locks(entry))
        )
        if not unused:
            return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in parents:  # e.g. outputs/<date>/, unless another run is in it by now
        try:
            parent.rmdir()
        except OSError:
            break


# --- the Hydra callback ------------------------------------------------------------------------


def refuse_anothers_ckpt_dir(config: DictConfig, run_dir: Path) -> None:
    """`refuse_anothers_directory` (and a file in the way) for the config's `trainer.ckpt_dir`,
    where it can be known before the job starts (not `${hydra:runtime.output_dir}`, set only
    then)."""
    ckpt_dir = OmegaConf.select(config, "trainer.ckpt_dir", throw_on_resolution_failure=False)
    if ckpt_dir and OmegaConf.select(config, "trainer.checkpoints", default=True):
        refuse_a_file_in_the_way(Path(str(ckpt_dir)), "trainer.ckpt_dir")
        refuse_anothers_directory(Path(os.path.abspath(str(ckpt_dir))), run_dir)


def _exit_with(err: ZooError) -> None:
    # Hydra turns a callback's exceptions into warnings and carries on: a refusal must exit.
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


class RunDirectory(Callback):
    """Claims `hydra.run.dir` (a sweep: `hydra.sweep.dir`) before Hydra writes into it; see the
    module's docstring. Configured in configs/train.yaml under `hydra.callbacks`."""

    def __init__(self) -> None:
        self._claimed: tuple[Path, str] | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # hydra.run.dir may use ${hydra:...}
        try:
            run_dir = Path(os.path.abspath(str(config.hydra.run.dir)))
            rank = launch_rank(config)
            if not rank:  # before anything is written or JAX starts; train() checks it again
                refuse_anothers_ckpt_dir(config, run_dir)
            created = make_directory(run_dir)
            acquire(run_dir, lock_name(rank))
            self._claimed = (run_dir, lock_name(rank))
            _created[:] = created
            resume = bool(OmegaConf.select(config, "trainer.resume", default=False))
            if not rank and not resume:
                refuse_earlier_results(run_dir)
        except ZooError as err:
            _exit_with(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(os.path.abspath(str(config.hydra.sweep.dir)))
            make_directory(sweep_dir, "hydra.sweep.dir")
            acquire(sweep_dir, LOCK, "hydra.sweep.dir")
            self._claimed = (sweep_dir, LOCK)
            found = sweep_results(sweep_dir)
            if found and not OmegaConf.select(config, "trainer.resume", default=False):
                raise ZooError(
                    f"hydra.sweep.dir={sweep_dir} holds an earlier sweep's results "
                    f"({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}): resume its "
                    "jobs with trainer.resume=true, or choose another hydra.sweep.dir"
                )
        except ZooError as err:
            _exit_with(err)

    def _release(self) -> None:
        if self._claimed is not None:
            release(*self._claimed)
            self._claimed = None
        _created.clear()

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
