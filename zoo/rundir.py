"""A run directory belongs to one run, and an earlier run's results are never overwritten unasked.

Ownership is an exclusive OS lock (`fcntl.flock`) on `<dir>/.lock`, which also holds the owner's
pid and host for the message a second run prints. The kernel drops the lock when its process
dies, however it dies, so a crashed run never blocks the next one. With several processes each
takes its own lock file, `.lock.<process index>`, so the processes of one run share a directory
while two runs cannot.

Where it happens: Hydra's `run_job` creates the run directory, opens the job's log file and writes
`.hydra/` before any callback's `on_job_start` or the task function. So the claim is made in
`on_run_start` (and `on_multirun_start` for a sweep's directory), which Hydra calls before
`run_job`: a second run into a directory that is in use, or that holds an earlier run's results
without `trainer.resume=true`, exits there with one line, before Hydra has touched anything of the
first run. `train()` claims its directories again (the lock is re-entrant within a process), which
covers library callers, the jobs of a sweep (each in its own process with some launchers) and a
shared `trainer.ckpt_dir`, whose lock needs the process index known only after distributed start.

Kept free of JAX imports: Hydra builds its callbacks at every start of train.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError

LOCK = ".lock"
# What a run leaves that a new run would overwrite (best/: the best model, where one is kept).
RESULTS = ("metrics.jsonl", "model", "best", "checkpoints", "loss.png")
SWEEP_RESULTS = ("summary.csv", "sweep.png")
# What a run refused or failed before its first result leaves: removable if the run created it.
SCAFFOLDING = (".hydra",)
# A directory holding `.lock` (it stays after the run) and one of these is a run's or a sweep's.
RUN_MARKS = (".hydra", "config.yaml", "metrics.jsonl", "checkpoints", "multirun.yaml")

# (rank, number of tasks): what SLURM and Open MPI tell each process of a launch.
RANK_VARIABLES = (
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
)

_held: dict[Path, list[int]] = {}  # lock file -> [fd, how many claims of this process hold it]
_created: list[Path] = []  # the run directory this process made, then the parents it made


def unique_suffix() -> str:
    """Microseconds and pid: with the time to the second in front, unique among the runs of one
    host even when they start in the same second (registered as the `${zoo.unique:}` resolver,
    cached per config, so every use in one run and its sweep jobs agrees)."""
    return f"{datetime.now():%f}-{os.getpid()}"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("zoo.unique", unique_suffix, use_cache=True, replace=True)


# --- locks -------------------------------------------------------------------------------------


def lock_name(process_index: int | None) -> str:
    """`.lock` for a single process or process 0, `.lock.<i>` for process i of several."""
    return f"{LOCK}.{process_index}" if process_index else LOCK


def acquire(directory: Path, name: str = LOCK, key: str = "hydra.run.dir") -> None:
    """Take the exclusive lock `directory/name` for this process, or raise a ZooError naming the
    process that holds it (`key`: the setting that chose the directory). Taking it again in the
    same process only counts; `release` as often as `acquire`."""
    path = Path(os.path.abspath(directory / name))
    if path in _held:
        _held[path][1] += 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise ZooError(f"{key}={directory}: cannot write there ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
        os.close(fd)
        raise ZooError(
            f"{key}={directory} is in use by another run ({holder}): wait for it to end, or "
            f"choose another {key}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[path] = [fd, 1]


def release(directory: Path, name: str = LOCK) -> None:
    path = Path(os.path.abspath(directory / name))
    held = _held.get(path)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _held[path]
        os.close(held[0])  # closing the last descriptor drops the flock


# --- earlier results ---------------------------------------------------------------------------


def earlier_results(directory: Path) -> list[str]:
    """The results of an earlier run in `directory` (an empty checkpoints/ is none)."""
    found = []
    for name in RESULTS:
        path = directory / name
        if name == "checkpoints":  # only a directory holding more than locks
            if path.is_dir() and not _only_locks(path):
                found.append(name + "/")
        elif path.exists():
            found.append(name + "/" if path.is_dir() else name)
    return found


def refuse_earlier_results(directory: Path, key: str = "hydra.run.dir") -> None:
    """Raise a ZooError if `directory` holds an earlier run's results."""
    found = earlier_results(directory)
    if found:
        raise ZooError(
            f"{key}={directory} holds an earlier run's results ({', '.join(found)}): continue "
            f"that run with trainer.resume=true, or choose another {key}"
        )


def sweep_results(sweep_dir: Path) -> list[str]:
    """An earlier sweep's results in `sweep_dir`: its summary, or any job's results."""
    found = [name for name in SWEEP_RESULTS if (sweep_dir / name).exists()]
    for root, dirs, _ in os.walk(sweep_dir):
        here = Path(root)
        prefix = "" if here == sweep_dir else f"{here.relative_to(sweep_dir)}/"
        found += [prefix + result for result in earlier_results(here)]
        dirs[:] = [d for d in dirs if d not in RESULTS and d not in SCAFFOLDING]
    return found


# --- the directories of a run ------------------------------------------------------------------


def make_directory(directory: Path, key: str = "hydra.run.dir") -> list[Path]:
    """Create `directory` and its missing parents; return the ones created, innermost first.
    A path that is a file, lies under a file or cannot be written is one ZooError."""
    directory = Path(os.path.abspath(directory))
    missing = [p for p in [directory, *directory.parents] if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ZooError(f"{key}={directory}: is a file, not a directory") from None
    except NotADirectoryError:
        raise ZooError(f"{key}={directory}: lies under a file, not a directory") from None
    except OSError as err:
        raise ZooError(f"{key}={directory}: cannot create it ({err.strerror})") from None
    return missing


def refuse_anothers_directory(ckpt_dir: Path, run_dir: Path) -> None:
    """Raise a ZooError if `ckpt_dir` is, or lies in, the directory of another run (or sweep):
    one holding a run's lock file and files that is not `run_dir` or a directory around it.
    Such checkpoints are that run's: writing them would mix two runs' weights, and the keeping of
    the newest would delete that run's own."""
    ckpt_dir, run_dir = Path(os.path.realpath(ckpt_dir)), Path(os.path.realpath(run_dir))
    ours = {run_dir, *run_dir.parents}
    for directory in (ckpt_dir, *ckpt_dir.parents):
        if directory in ours:
            continue
        if (directory / LOCK).is_file() and any((directory / m).exists() for m in RUN_MARKS):
            raise ZooError(
                f"trainer.ckpt_dir={ckpt_dir} lies in the directory of another run ({directory}): "
                "its checkpoints are that run's; choose a directory of this run's own, or "
                "continue that run with its own hydra.run.dir"
            )


@contextmanager
def owned(
    run_dir: Path,
    ckpt_dir: Path | None = None,
    *,
    resume: bool,
    process_index: int = 0,
) -> Iterator[None]:
    """Hold `run_dir` and the run's checkpoint directory `ckpt_dir` (the default
    `<run_dir>/checkpoints` as well as a directory elsewhere, shared by a run's processes) for
    this process; refuse a `run_dir` holding an earlier run's results unless `resume`, and a
    `ckpt_dir` in another run's directory. Process 0 owns the results; the others only lock their
    own `.lock.<i>`. Each process locks `<ckpt_dir>/.lock.<i>`, so a second run pointed at a
    checkpoint directory in use is refused whichever setting chose it."""
    run_dir = Path(run_dir)
    make_directory(run_dir)
    name = lock_name(process_index)
    acquire(run_dir, name)
    try:
        if process_index == 0 and not resume:
            refuse_earlier_results(run_dir)
        if ckpt_dir is not None:
            if process_index == 0:  # the others follow process 0 into the directory it checked
                refuse_anothers_directory(ckpt_dir, run_dir)
            make_directory(ckpt_dir, "trainer.ckpt_dir")
            acquire(ckpt_dir, f"{LOCK}.{process_index}", "trainer.ckpt_dir")
        try:
            yield
        finally:
            if ckpt_dir is not None:
                release(ckpt_dir, f"{LOCK}.{process_index}")
    finally:
        release(run_dir, name)


# The names the zoo writes a run's files under before renaming them into place (zoo.files:
# tempfile's 8 random characters): `.best.<8>/` (and `.best.<8>.old/`, the save it replaces),
# `.model.<8>/`, `.metrics.jsonl.<8>.tmp`. A run killed in between leaves them behind.
_STAGED = re.compile(r"\.(best|model)\.[a-z0-9_]{8}(\.old)?")
_REPLACING = re.compile(
    r"\.(metrics\.jsonl|config\.yaml|loss\.png|init_report\.json|status\.json)\.[a-z0-9_]{8}\.tmp"
)


def remove_leftovers(run_dir: Path) -> None:
    """Remove what a killed write of `best/`, `model/` or a run file left in `run_dir`, by the
    zoo's own temporary names only. A `.best.<8>.old/` whose `best/` is gone is the last whole
    save (killed between its two renames): it is put back instead."""
    log = logging.getLogger(__name__)
    for path in sorted(Path(run_dir).iterdir()):
        staged = _STAGED.fullmatch(path.name)
        if staged and path.is_dir() and not path.is_symlink():
            whole = path.with_name(staged.group(1))
            if staged.group(2) and not whole.exists():
                log.info("putting back %s, the last whole save of %s", path, whole)
                path.rename(whole)
            else:
                log.info("removing %s, left by an interrupted save", path)
                shutil.rmtree(path)
        elif _REPLACING.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            log.info("removing %s, left by an interrupted write", path)
            path.unlink()


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


def _only_locks(directory: Path) -> bool:
    return directory.is_dir() and all(p.name.startswith(LOCK) for p in directory.iterdir())


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
            or (entry.name == "checkpoints" and _only_locks(entry))
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
    """`refuse_anothers_directory` for the config's `trainer.ckpt_dir`, where it can be known
    before the job starts (not `${hydra:runtime.output_dir}`, set only then)."""
    ckpt_dir = OmegaConf.select(config, "trainer.ckpt_dir", throw_on_resolution_failure=False)
    if ckpt_dir and OmegaConf.select(config, "trainer.checkpoints", default=True):
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
