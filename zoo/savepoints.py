"""When a run saves a checkpoint: a schedule priced in wall time as well as steps. The end of a
run and the stop signals (SIGTERM, Ctrl-C; zoo/interrupts.py) always force one.

A checkpoint protects the work done since the one before it, and costs a save (tens of
milliseconds for a small model, more for a large one). Saving every `ckpt_every` steps alone
lets a fast model spend more time saving than training (the seed model trains 500 steps in a few
milliseconds). So a step that is a multiple of `trainer.ckpt_every` saves only once at least
`trainer.ckpt_every_seconds` have passed since the last save (or since the run started): the time
spent saving stays below one save per `ckpt_every_seconds`, and a crash loses at most about
`ckpt_every_seconds` plus `ckpt_every` steps of work. `trainer.ckpt_every_seconds=0` saves at
every multiple. The end of the run, SIGTERM and Ctrl-C always save. Checkpoints stay at multiples
of `ckpt_every` (log points), so a resumed run splits its steps where the uninterrupted one did
and stays bitwise the same.

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

    def due(self, step: int, forced: bool = False) -> bool:
        """Whether to save at `step`: `forced` (the end, a stop signal), or a multiple of
        `every_steps` at least `every_seconds` after the last save. All processes of a
        multi-process run get process 0's answer (they save together)."""
        now = self.clock()
        wanted = forced or (
            step % self.every_steps == 0 and now - self.last_save >= self.every_seconds
        )
        if jax.process_count() > 1 and not forced and step % self.every_steps == 0:
            from jax.experimental import multihost_utils

            wanted = bool(multihost_utils.broadcast_one_to_all(np.int32(wanted)))
        if wanted:
            self.last_save = now
        return wanted
