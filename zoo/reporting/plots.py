"""A run's loss curves, `loss.png`: drawn with matplotlib's object API on the Agg canvas (no pyplot
state, no display needed) and written to a temporary file first, then renamed, so a picture is
whole or absent.

`draw_losses` draws here, or hands the drawing to a delegate an app installs (zoo-train's plot
helper process, zoo/app/plot_helper.py, draws while the run saves); the library knows of no
process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from zoo.files import replacing
from zoo.reporting.metrics_log import read_metrics

log = logging.getLogger(__name__)

Records = Sequence[dict[str, float]]


def series(records: Records, key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r]
    return [s for s, _ in points], [v for _, v in points]


def log_scale_helps(values: Iterable[float]) -> bool:
    """Log scale when every value is positive and they span more than a factor of ten."""
    values = list(values)
    return bool(values) and min(values) > 0 and max(values) > 10 * min(values)


def save_figure(fig: Any, path: Path) -> Path:
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def figure(panels: int, *, fixed_margins: bool = False) -> tuple[Any, list[Any]]:
    """A figure of `panels` axes side by side, laid out by matplotlib's constrained layout, or
    with `fixed_margins`, wide enough for the labels of a loss plot at half the drawing time
    (loss.png is drawn at the end of every run)."""
    from matplotlib.figure import Figure

    width, height = 6.4 + 4.8 * (panels - 1), 4.4
    fig = Figure(figsize=(width, height), layout=None if fixed_margins else "constrained")
    if fixed_margins:  # in inches: tick labels and the axis label, the title
        fig.subplots_adjust(
            left=0.85 / width,
            right=1 - 0.2 / width,
            bottom=0.55 / height,
            top=1 - 0.35 / height,
            wspace=0.3,
        )
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def plot_losses(records: Records, path: str | Path, title: str = "") -> Path:
    """Train and validation loss against step (log scale where it helps), and validation
    accuracy beside them when the records have it; written as a PNG to `path`."""
    has_accuracy = any("val_accuracy" in r for r in records)
    fig, axes = figure(2 if has_accuracy else 1, fixed_margins=True)
    ax = axes[0]
    losses = []
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        steps, values = series(records, key)
        if steps:
            ax.plot(steps, values, style, label=key.replace("_", " "), markersize=4)
            losses += values
    if log_scale_helps(losses):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title or "loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if has_accuracy:
        from matplotlib.ticker import PercentFormatter

        steps, values = series(records, "val_accuracy")
        acc = axes[1]
        acc.plot(steps, values, "o-", color="tab:green", markersize=4)
        acc.set(xlabel="step", ylabel="validation accuracy", xlim=ax.get_xlim())
        acc.set_title(f"validation accuracy (last {values[-1]:.2%})")
        acc.set_ylim(max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.02) + 0.002)
        acc.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        acc.grid(True, alpha=0.3)
    return save_figure(fig, Path(path))


class LossDrawer(Protocol):
    """Draws loss pictures somewhere else (another process): `draw` asks for one, `wait` returns
    once every picture asked for is whole."""

    def draw(self, metrics: Path, out: Path, title: str) -> None: ...

    def wait(self) -> None: ...


_delegate: LossDrawer | None = None


def delegate_drawing(drawer: LossDrawer | None) -> None:
    """Hand every later `draw_losses` to `drawer` (None: draw in this process again)."""
    global _delegate
    _delegate = drawer


def draw_losses(metrics: Path, out: Path, title: str) -> None:
    """Draw `out` from the records in `metrics`: by the delegate if an app installed one, else
    here. An empty `metrics` (a run of `trainer.steps=0`) draws nothing and says nothing."""
    try:
        if metrics.stat().st_size == 0:
            return
    except OSError:
        return
    if _delegate is not None:
        _delegate.draw(metrics, out, title)
        return
    draw_here(metrics, out, title)


def wait_for_drawings() -> None:
    """Return once every picture asked for is whole (at once without a delegate)."""
    if _delegate is not None:
        _delegate.wait()


def draw_here(metrics: Path, out: Path, title: str) -> None:
    """Draw `out` from `metrics` in this process, if it holds any record."""
    records = read_metrics(metrics)
    if records:
        log.info("loss curves in %s", plot_losses(records, out, title))
