"""What a person sees while a run trains: a live bar on a terminal, plain log lines elsewhere.

Updated only at log points (the fused-dispatch boundaries), so it never slows the jitted loop.
Every log point is one log line in either case: on a terminal the console leaves it out (the bar
shows it), so Hydra's log file holds each line exactly once and the screen is not flooded.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

_HIDE_ON_CONSOLE = "zoo_progress"  # attribute set on log records the bar already shows


def format_record(record: dict[str, float], digits: int = 6) -> str:
    """`key=value` pairs of a metrics record to `digits` significant digits, `step` left out."""
    return " ".join(f"{k}={v:.{digits}g}" for k, v in record.items() if k != "step")


def is_terminal(*streams: IO[Any]) -> bool:
    return all(getattr(s, "isatty", lambda: False)() for s in streams)


class _HideFromConsole(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, _HIDE_ON_CONSOLE, False)


def _console_handlers() -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


class Progress:
    """Context manager; call `update(record)` at each log point with the metrics logged there.

    `bar=None` shows a bar when stdout and stderr are both terminals. With a bar, other log
    messages print above it instead of through it.
    """

    def __init__(
        self, total: int, *, start: int = 0, bar: bool | None = None, file: IO[str] | None = None
    ):
        self.total, self.done = total, start
        self.file = file or sys.stderr
        self.show_bar = is_terminal(sys.stdout, self.file) if bar is None else bar
        self._bar: Any = None
        self._shown: dict[str, float] = {}
        self._filter = _HideFromConsole()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Progress:
        self._started = self._last_time = time.perf_counter()
        self._start = self._last_step = self.done
        if self.show_bar:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            for handler in _console_handlers():
                handler.addFilter(self._filter)
                self._stack.callback(handler.removeFilter, self._filter)
            self._stack.enter_context(logging_redirect_tqdm())  # copies the filter
            self._bar = self._stack.enter_context(
                tqdm(
                    total=self.total,
                    initial=self.done,
                    unit="step",
                    file=self.file,
                    mininterval=0,
                    dynamic_ncols=True,
                    desc="train",
                )
            )
        return self

    def update(self, record: dict[str, float]) -> None:
        """Advance to `record["step"]` and show the record's metrics with the rate since the
        previous update."""
        now, step = time.perf_counter(), int(record["step"])
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        log.info(
            "step=%d/%d %s steps/s=%.0f",
            step,
            self.total,
            format_record(record),
            rate,
            extra={_HIDE_ON_CONSOLE: True},
        )
        if self._bar is not None:
            self._shown |= record  # validation metrics stay until the next evaluation
            self._bar.set_postfix_str(format_record(self._shown, digits=4), refresh=False)
            self._bar.update(step - self.done)
        self.done = step

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()
        if exc_type is None and self.done > self._start:
            seconds = self._last_time - self._started  # to the last log point: the loop alone
            log.info(
                "trained %d steps in %.3gs (%.0f steps/s, compilation included)",
                self.done - self._start,
                seconds,
                (self.done - self._start) / seconds,
            )
