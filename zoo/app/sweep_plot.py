"""A sweep's jobs side by side: `sweep.png`, every job's curve of one metric.

A sweep (-m) ends with `sweep.png` in its directory (zoo.app.sweep.SweepSummary calls
`plot_sweep`); `python -m zoo.app.sweep_plot multirun/<date>/<time> [METRIC]` draws it again, for
any logged metric.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from zoo.app.job_status import OK, STATUS, read_status
from zoo.errors import ZooError
from zoo.reporting.metrics_log import natural_key, read_metrics
from zoo.reporting.plots import figure, log_scale_helps, save_figure, series


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
    fig, (ax,) = figure(1)
    values_seen = []
    for job, label in zip(jobs, _job_labels(jobs), strict=True):
        steps, values = series(read_metrics(job / "metrics.jsonl"), key)
        status = read_status(job).get("status", OK)
        label = label if status == OK else f"{label} ({status})"
        if steps:
            ax.plot(steps, values, "o-" if status == OK else "x--", markersize=3, label=label)
            values_seen += values
        elif status != OK:  # failed before logging `key`: listed in the legend all the same
            ax.plot([], [], "x", label=label)
    if not values_seen:
        raise ZooError(f"{sweep_dir}: no job logged {key}")
    if log_scale_helps(values_seen):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=key.replace("_", " "), title=f"{sweep_dir.name}: {key} by job")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, sweep_dir / "sweep.png")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m zoo.app.sweep_plot SWEEP_DIR [KEY]`: write SWEEP_DIR/sweep.png."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print(
            "usage: python -m zoo.app.sweep_plot SWEEP_DIR [METRIC (default val_loss)]",
            file=sys.stderr,
        )
        return 2
    try:
        print(plot_sweep(*args))
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
