"""The best evaluation and early stopping: `trainer.monitor`, `trainer.monitor_mode`,
`trainer.patience`.

At each evaluation the monitored metric is compared with the best so far; the caller writes the
weights of a better one to `<run dir>/best/`. What the monitor knows is saved in every
checkpoint's meta (`state()` / `restore()`), so a resumed run decides exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from zoo.errors import ZooError

log = logging.getLogger(__name__)


class Monitor:
    """Tracks the best value of one logged metric over a run's evaluations."""

    def __init__(self, metric: str, mode: str, patience: int | None) -> None:
        self.metric, self.mode, self.patience = metric, mode, patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.evals_without_improvement = 0

    @classmethod
    def from_config(cls, trainer_cfg: Any) -> Monitor:
        return cls(trainer_cfg.monitor, trainer_cfg.monitor_mode, trainer_cfg.patience)

    def check_logged(self, logged: set[str]) -> None:
        """ZooError unless the monitored metric is one an evaluation logs."""
        if self.metric not in logged:
            raise ZooError(
                f"trainer.monitor={self.metric} is not a logged metric; "
                f"logged: {', '.join(sorted(logged))}"
            )

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def update(self, record: dict[str, float], evaluated: bool) -> bool:
        """Compare an evaluation's record with the best so far; True if it is better (strictly).
        Records without an evaluation change nothing."""
        if not evaluated:
            return False
        value = record[self.metric]
        if self._better(value):
            self.best, self.best_step = value, int(record["step"])
            self.evals_without_improvement = 0
            return True
        self.evals_without_improvement += 1
        return False

    @property
    def exhausted(self) -> bool:
        """True once `patience` evaluations in a row did not improve on the best."""
        return self.patience is not None and self.evals_without_improvement >= self.patience

    def stop_message(self, step: int) -> str:
        return (
            f"early stopping at step {step}: {self.metric} has not improved for "
            f"{self.evals_without_improvement} evaluations (trainer.patience={self.patience}); "
            f"best {self.metric}={self.best:.6g} at step {self.best_step}"
        )

    @property
    def optimized_metric(self) -> float:
        """The best value so far (NaN before the first evaluation): what a sweeper optimizes."""
        return math.nan if self.best is None else self.best

    def state(self) -> dict[str, Any]:
        """What to save in a checkpoint's meta (JSON: floats round-trip exactly)."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best,
            "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement,
        }

    def restore(self, saved: Any) -> None:
        """Continue from a checkpoint's `state()`; a checkpoint without one (older runs) or one
        that monitored another metric or mode starts the monitor afresh, with a warning."""
        if not isinstance(saved, dict):
            log.warning("the checkpoint has no best %s: the best is tracked from here", self.metric)
            return
        if (saved.get("metric"), saved.get("mode")) != (self.metric, self.mode):
            log.warning(
                "the checkpoint monitored %s (%s), this run %s (%s): the best is tracked from here",
                saved.get("metric"),
                saved.get("mode"),
                self.metric,
                self.mode,
            )
            return
        self.best, self.best_step = saved["best"], saved["best_step"]
        self.evals_without_improvement = int(saved["evals_without_improvement"])
