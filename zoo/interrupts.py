"""Stopping a run on request without losing anything: SIGTERM (a scheduler) and SIGINT (Ctrl-C)
only set a flag that the loop reads at its next log point, where it saves a checkpoint and stops.

A second Ctrl-C stops at once, as SIGKILL would: the metrics log and the checkpoints are made to
survive that (a resume cuts the log back to the latest whole checkpoint), so it loses only the
steps since that checkpoint, and it prints one line instead of a traceback from every thread.

Outside the loop (start-up: imports, Hydra, the build, `init.from`; and after it) there is nothing
to save: from their first moment the apps make SIGTERM end the process at once with one
`stopped: SIGTERM` line and status 143 (`stop_at_once_on_sigterm`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

from zoo.errors import RunStopped

log = logging.getLogger(__name__)

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}
_unanswered: list[int] = []  # a signal a run got too late to stop for (see take_unanswered)


def take_unanswered() -> int | None:
    """The signal the last run received but did not stop for, because it came during its last
    dispatch or final save and the run finished instead (None: none); asking clears it. A sweep
    asks after each job, and stops there."""
    signum = _unanswered[-1] if _unanswered else None
    _unanswered.clear()
    return signum


def discard_run_dir_if_unused() -> None:
    """`zoo.rundir.discard_if_unused()` if this process has imported zoo.rundir (which claims the
    run directory): never imported here, where a signal may have cut an import short, and so
    that the apps handle signals before they import Hydra."""
    discard = getattr(sys.modules.get("zoo.rundir"), "discard_if_unused", None)
    if discard is not None:
        discard()


def stop_at_once_on_sigterm() -> Any:
    """Make SIGTERM end the process at once, with one `stopped: SIGTERM` line and status 143 (a
    StopRequest takes SIGTERM over while it is active, and hands it back). Returns the handler
    it replaced; elsewhere than the main thread it does nothing and returns None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _stop_at_once)


def _stop_at_once(signum: int, frame: Any) -> None:
    # Not an exception raised where the program is, as Ctrl-C's KeyboardInterrupt: inside an
    # import or a library's cleanup it comes out as another error (numpy's C extension turns it
    # into an ImportError, an interrupted OmegaConf update into an AttributeError). Outside the
    # loop nothing is open that an exit would leave half-written: files are written under
    # temporary names and renamed (a run's next start removes what is left), and a run directory
    # this process made and wrote no result into is removed, as after a refusal.
    discard_run_dir_if_unused()
    # the process's own stderr: the apps hold sys.stderr back while Hydra composes (zoo.cli)
    print("stopped: SIGTERM", file=sys.__stderr__ or sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:  # the run's log file
        handler.flush()
    os._exit(128 + signal.SIGTERM)


class StopRequest:
    """While active, SIGTERM and SIGINT set `signum`; the loop asks `stop_now(step, where)` at
    each log point. Only the main thread can take signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def received(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            print(
                "stopped: Ctrl-C twice: stopped at once; continue from the latest checkpoint "
                "with trainer.resume=true and the same hydra.run.dir",
                file=sys.stderr,
                flush=True,
            )
            for handler in logging.getLogger().handlers:  # the run's log file
                handler.flush()
            os._exit(128 + signal.SIGINT)
        if self.signum is None:
            self.signum = signum
        again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
        log.warning(
            "%s received: saving a checkpoint at the next log point, then stopping%s",
            NAMES[signum],
            again,
        )

    def stopped(self, step: int, checkpoints: os.PathLike) -> RunStopped:
        """The RunStopped to raise once the checkpoint at `step` is saved."""
        assert self.signum is not None
        return RunStopped(
            f"{NAMES[self.signum]} at step {step}: checkpoint saved in {checkpoints}; continue "
            "with trainer.resume=true and the same hydra.run.dir",
            exit_code=128 + self.signum,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in NAMES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        _unanswered.clear()
        if self.signum is not None and not (exc_type and issubclass(exc_type, RunStopped)):
            _unanswered.append(self.signum)  # the run ended without stopping for it
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
