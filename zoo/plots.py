"""Pictures of runs: a run's loss curves (`loss.png`) and a sweep's jobs side by side.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed) and
written to a temporary file first, then renamed, so a picture is whole or absent.

A sweep (-m) ends with `sweep.png` in its directory (zoo.sweep.SweepSummary calls `plot_sweep`);
`python -m zoo.plots multirun/<date>/<time> [METRIC]` draws it again, for any logged metric.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.files import replacing
from zoo.job_status import OK, STATUS, read_status
from zoo.metrics import natural_key, read_metrics

Records = Sequence[dict[str, float]]


def _series(records: Records, key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r]
    return [s for s, _ in points], [v for _, v in points]


def _log_scale_helps(values: Iterable[float]) -> bool:
    """Log scale when every value is positive and they span more than a factor of ten."""
    values = list(values)
    return bool(values) and min(values) > 0 and max(values) > 10 * min(values)


def _save(fig: Any, path: Path) -> Path:
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def _figure(panels: int, *, fixed_margins: bool = False) -> tuple[Any, list[Any]]:
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
    fig, axes = _figure(2 if has_accuracy else 1, fixed_margins=True)
    ax = axes[0]
    losses = []
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        steps, values = _series(records, key)
        if steps:
            ax.plot(steps, values, style, label=key.replace("_", " "), markersize=4)
            losses += values
    if _log_scale_helps(losses):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title or "loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if has_accuracy:
        from matplotlib.ticker import PercentFormatter

        steps, values = _series(records, "val_accuracy")
        acc = axes[1]
        acc.plot(steps, values, "o-", color="tab:green", markersize=4)
        acc.set(xlabel="step", ylabel="validation accuracy", xlim=ax.get_xlim())
        acc.set_title(f"validation accuracy (last {values[-1]:.2%})")
        acc.set_ylim(max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.02) + 0.002)
        acc.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        acc.grid(True, alpha=0.3)
    return _save(fig, Path(path))


def _overrides(job_dir: Path) -> list[str]:
    """A job's command-line overrides (Hydra's .hydra/overrides.yaml); [] if unreadable."""
    overrides = job_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from zoo.untrusted import load_yaml

        try:
            items = OmegaConf.to_container(load_yaml(overrides))
        except (ZooError, OmegaConfBaseException):  # still plot, by folder name
            items = None
        if isinstance(items, list):
            return [str(item) for item in items]
    return []


def _job_labels(jobs: list[Path]) -> list[str]:
    """Each job's overrides that not every job shares (what the sweep varies), else its folder
    name."""
    overrides = [_overrides(job) for job in jobs]
    shared = set.intersection(*map(set, overrides)) if len(jobs) > 1 else set()
    return [
        " ".join(o for o in items if o not in shared) or job.name
        for job, items in zip(jobs, overrides, strict=True)
    ]


def plot_sweep(sweep_dir: str | Path, key: str = "val_loss") -> Path:
    """Every job's `key` curve from `<sweep_dir>/**/metrics.jsonl` in one picture,
    `<sweep_dir>/sweep.png`, labelled by the job's overrides that differ between jobs, and by its
    status if it diverged or failed (such a job is in the legend even without a point)."""
    sweep_dir = Path(sweep_dir)
    found = [*sweep_dir.glob("*/**/metrics.jsonl"), *sweep_dir.glob(f"*/**/{STATUS}")]
    jobs = sorted({p.parent for p in found}, key=natural_key)
    if not jobs:
        raise ZooError(f"{sweep_dir}: no job folders with a metrics.jsonl")
    fig, (ax,) = _figure(1)
    values_seen = []
    for job, label in zip(jobs, _job_labels(jobs), strict=True):
        steps, values = _series(read_metrics(job / "metrics.jsonl"), key)
        status = read_status(job).get("status", OK)
        label = label if status == OK else f"{label} ({status})"
        if steps:
            ax.plot(steps, values, "o-" if status == OK else "x--", markersize=3, label=label)
            values_seen += values
        elif status != OK:  # failed before logging `key`: listed in the legend all the same
            ax.plot([], [], "x", label=label)
    if not values_seen:
        raise ZooError(f"{sweep_dir}: no job logged {key}")
    if _log_scale_helps(values_seen):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=key.replace("_", " "), title=f"{sweep_dir.name}: {key} by job")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, sweep_dir / "sweep.png")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m zoo.plots SWEEP_DIR [KEY]`: write SWEEP_DIR/sweep.png."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m zoo.plots SWEEP_DIR [METRIC (default val_loss)]", file=sys.stderr)
        return 2
    try:
        print(plot_sweep(*args))
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
