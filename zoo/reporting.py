"""Everything a run reports besides metrics.jsonl: progress, TensorBoard scalars, loss.png.

The training loop calls a `Reporter` once per log point with that point's metrics record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from zoo.errors import ZooError
from zoo.progress import Progress

log = logging.getLogger(__name__)

LOGGERS = ("tensorboard",)


class TensorBoard:
    """Scalars of every record into `<run dir>/<subdir>/` through tensorboardX (optional extra)."""

    def __init__(self, log_dir: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ZooError(
                "logger=tensorboard needs tensorboardX: pip install 'zoo[tensorboard]' "
                "(make install includes it)"
            ) from None
        self.writer = SummaryWriter(logdir=str(log_dir))
        log.info("TensorBoard events in %s (tensorboard --logdir %s)", log_dir, log_dir)

    def __call__(self, record: dict[str, float]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class Reporter:
    """Context manager for a run's reports; call it with each log point's metrics record.

    It draws `<run_dir>/loss.png` from `<run_dir>/metrics.jsonl` at the record of the last step
    (the plot helper then draws while the run saves), else on a clean exit. With `run_dir=None` (a
    process that writes no files) it only shows progress.
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        total: int,
        *,
        start: int = 0,
        logger: Any = None,
        title: str = "",
        bar: bool | None = None,
    ):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.title = title
        self.total = total
        self.drawn = False
        self.progress = Progress(total, start=start, bar=bar)
        self.logger_cfg = logger
        self.writers: list[TensorBoard] = []

    def __enter__(self) -> Reporter:
        if self.logger_cfg is not None and self.run_dir is not None:
            for name, settings in self.logger_cfg.items():
                if name not in LOGGERS:
                    raise ZooError(f"logger={name} is unknown; valid: {', '.join(LOGGERS)}")
                self.writers.append(TensorBoard(self.run_dir / settings.subdir))
        self.progress.__enter__()
        return self

    def __call__(self, record: dict[str, float]) -> None:
        self.progress.update(record)
        for writer in self.writers:
            writer(record)
        if record["step"] == self.total:  # metrics.jsonl is complete
            self._draw()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)
        for writer in self.writers:
            writer.close()
        if exc_type is None:
            self._draw()

    def _draw(self) -> None:
        if self.drawn or not self.run_dir or not (self.run_dir / "metrics.jsonl").exists():
            return
        from zoo.plotter import draw_losses  # by zoo-train's helper process if it runs

        draw_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png", self.title)
        self.drawn = True
