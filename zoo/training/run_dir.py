"""A run directory belongs to one run, and an earlier run's results are never overwritten unasked.

Ownership is an exclusive OS lock (`fcntl.flock`) on `<dir>/.lock`, which also holds the owner's
pid and host for the message a second run prints. The kernel drops the lock when its process
dies, however it dies, so a crashed run never blocks the next one. With several processes each
takes its own lock file, `.lock.<process index>`, so the processes of one run share a directory
while two runs cannot.

`train()` claims its directories (`owned`); zoo-train claims them earlier too, before Hydra
writes anything (zoo/app/run_directory.py). The lock is re-entrant within a process. Free of JAX
imports: the app's Hydra callback uses this at every start of train.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo.errors import ZooError

LOCK = ".lock"
# What a run leaves that a new run would overwrite (best/: the best model, where one is kept).
RESULTS = ("metrics.jsonl", "model", "best", "checkpoints", "loss.png")
SWEEP_RESULTS = ("summary.csv", "sweep.png")
# What a run refused or failed before its first result leaves: removable if the run created it.
SCAFFOLDING = (".hydra",)
# A directory holding `.lock` (it stays after the run) and one of these is a run's or a sweep's.
RUN_MARKS = (".hydra", "config.yaml", "metrics.jsonl", "checkpoints", "multirun.yaml")

_held: dict[Path, list[int]] = {}  # lock file -> [fd, how many claims of this process hold it]


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
            if path.is_dir() and not only_locks(path):
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


def refuse_a_file_in_the_way(directory: Path, key: str) -> None:
    """make_directory's refusal of a `directory` that is a file or lies under one, without
    creating anything: for a check made before the run starts."""
    directory = Path(os.path.abspath(directory))
    for path in [directory, *directory.parents]:
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is a file" if path == directory else "lies under a file"
                raise ZooError(f"{key}={directory}: {where}, not a directory")
            return


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
    r"\.(metrics\.jsonl|config\.yaml|loss\.png|init_report\.json|status\.json|sharding\.json)"
    r"\.[a-z0-9_]{8}\.tmp"
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


def only_locks(directory: Path) -> bool:
    return directory.is_dir() and all(p.name.startswith(LOCK) for p in directory.iterdir())
