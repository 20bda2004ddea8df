"""When a run saves a checkpoint: every `trainer.ckpt_every` steps when the user sets it, else
a schedule priced in wall time as well as steps. The end of a run and the stop signals (SIGTERM,
Ctrl-C; zoo/training/interrupts.py) always force one.

A checkpoint protects the work done since the one before it, and costs a save. Saving every 500
steps alone lets a fast model spend more time saving than training (benchmarks/NOTES.md has the
seed model's figures). So by default (`trainer.ckpt_every=null`,
`trainer.ckpt_every_seconds=null`) a multiple of 500 steps saves only once at least 300 s have
passed since the last save (or since the run started): the time spent saving stays below one
save per five minutes, and a crash loses at most about five minutes plus 500 steps of work.

A step interval the user sets (`trainer.ckpt_every=50`) is honoured: every multiple saves. A time
gate applies to it only when `trainer.ckpt_every_seconds` is set as well; that setting alone
changes the default gate (`trainer.ckpt_every_seconds=0`: every multiple of 500). The end of the
run, SIGTERM and Ctrl-C always save. Checkpoints stay at multiples of the step interval (log
points), so a resumed run splits its steps where the uninterrupted one did and stays bitwise the
same.

There is no step-0 checkpoint: it would protect no work (the config and seed give the same state),
and a run stopped before its first save simply starts again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import jax
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EVERY_STEPS = 500  # trainer.ckpt_every=null
DEFAULT_EVERY_SECONDS = 300.0  # trainer.ckpt_every_seconds=null with trainer.ckpt_every=null


def checkpoint_every(ckpt_every: int | None, ckpt_every_seconds: float | None) -> tuple[int, float]:
    """The (steps, seconds) schedule `trainer.ckpt_every` and `trainer.ckpt_every_seconds` ask for:
    null steps are every 500; null seconds are 300 with null steps and 0 (no gate) without."""
    if ckpt_every_seconds is None:
        ckpt_every_seconds = DEFAULT_EVERY_SECONDS if ckpt_every is None else 0.0
    return ckpt_every or DEFAULT_EVERY_STEPS, float(ckpt_every_seconds)


class SaveSchedule:
    """Decides at each log point whether to save: `due(step, forced)`."""

    def __init__(
        self,
        every_steps: int,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.clock = clock
        self.last_save = clock()  # the run's start: the work a first save protects starts here

    @classmethod
    def from_settings(
        cls,
        ckpt_every: int | None,
        ckpt_every_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> SaveSchedule:
        """The schedule of `trainer.ckpt_every` and `trainer.ckpt_every_seconds` (see the
        module's docstring for what null means)."""
        return cls(*checkpoint_every(ckpt_every, ckpt_every_seconds), clock=clock)

    def due(self, step: int, forced: bool = False) -> bool:
        """Whether to save at `step`: `forced` (the end, a stop signal), or a multiple of
        `every_steps` at least `every_seconds` after the last save. All processes of a
        multi-process run get process 0's answer (they save together)."""
        now = self.clock()
        wanted = forced or (
            step % self.every_steps == 0 and now - self.last_save >= self.every_seconds
        )
        gated = self.every_seconds > 0  # only a clock can make the processes disagree
        if jax.process_count() > 1 and gated and not forced and step % self.every_steps == 0:
            from jax.experimental import multihost_utils

            wanted = bool(multihost_utils.broadcast_one_to_all(np.int32(wanted)))
        if wanted:
            self.last_save = now
        return wanted
