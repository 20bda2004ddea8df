"""Everything a run reports besides metrics.jsonl: progress, the chosen loggers
(zoo/reporting/loggers.py) and loss.png.

The training loop calls a `Reporter` once per log point with that point's metrics record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from zoo.reporting import plots
from zoo.reporting.progress import Progress

if TYPE_CHECKING:
    from zoo.reporting.loggers import MetricLogger

log = logging.getLogger(__name__)


class Reporter:
    """Context manager for a run's reports; call it with each log point's metrics record.

    It draws `<run_dir>/loss.png` from `<run_dir>/metrics.jsonl` (unless `trainer.plots=false`)
    at the record of the last step (an app's drawing delegate then draws while the run saves), else
    on a clean exit, and hands the loggers the run's artifacts: loss.png, config.yaml and model/
    (saved inside the block). With `run_dir=None` (a process that writes no files) it only shows
    progress.
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        total: int,
        *,
        start: int = 0,
        config: DictConfig | None = None,
        title: str = "",
        bar: bool | None = None,
    ):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.title = title
        self.total = total
        self.drawn = False
        self.progress = Progress(total, start=start, bar=bar)
        self.start = start
        self.config = config
        self.plots = config is None or config.trainer.get("plots", True)
        self.loggers: list[MetricLogger] = []

    def __enter__(self) -> Reporter:
        if self.config is not None and self.config.get("logger") and self.run_dir is not None:
            from zoo.reporting.loggers import open_loggers  # only for a run with loggers

            try:
                self.loggers = open_loggers(self.config, self.run_dir, self.start)
            except Exception:
                self._forget_empty_record()
                raise
        self.progress.__enter__()
        return self

    def _forget_empty_record(self) -> None:
        """A logger that cannot start (an unreachable server, no account) stops a fresh run
        before its first record: the empty metrics.jsonl it began must not make the next run
        into this directory look like the continuation of an earlier one."""
        record = self.run_dir / "metrics.jsonl"
        if self.start == 0 and record.is_file() and record.stat().st_size == 0:
            record.unlink()

    def __call__(self, record: dict[str, float]) -> None:
        self.progress.update(record)
        for logger in self.loggers:
            logger.log(record)
        if record["step"] == self.total:  # metrics.jsonl is complete
            self._draw()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)
        artifacts = []
        if exc_type is None and self.run_dir:
            self._draw()
            if self.loggers and self.drawn:
                plots.wait_for_drawings()  # loss.png is whole before the loggers keep it
            names = ("loss.png", "config.yaml", "model")
            artifacts = [self.run_dir / name for name in names if (self.run_dir / name).exists()]
        if self.loggers:
            from zoo.reporting.loggers import status_of

            for logger in self.loggers:
                logger.close(status_of(exc), artifacts)

    def _draw(self) -> None:
        if self.drawn or not self.plots or not self.run_dir:
            return
        if not (self.run_dir / "metrics.jsonl").exists():
            return
        plots.draw_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png", self.title)
        self.drawn = True
