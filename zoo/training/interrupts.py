"""Stopping a run on request without losing anything: SIGTERM (a scheduler) and SIGINT (Ctrl-C)
only set a flag that the loop reads at its next log point, where it saves a checkpoint and stops.

What a second Ctrl-C does is the app's to say (zoo-train stops at once, as SIGKILL would: the
metrics log and the checkpoints are made to survive that); the library raises KeyboardInterrupt.
Outside the loop there is nothing to save: zoo/app/process.py ends zoo-train at once there.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
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


class StopRequest:
    """While active, SIGTERM and SIGINT set `signum`, which the loop reads at each log point. A
    second Ctrl-C calls `second_interrupt` (zoo-train's ends the process at once), or without
    one raises KeyboardInterrupt. Only the main thread can take signals; elsewhere this does
    nothing."""

    def __init__(self, second_interrupt: Callable[[], Any] | None = None) -> None:
        self.signum: int | None = None
        self.second_interrupt = second_interrupt
        self._previous: dict[int, Any] = {}

    @property
    def received(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            if self.second_interrupt is None:
                raise KeyboardInterrupt
            self.second_interrupt()
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
