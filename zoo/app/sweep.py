"""The summary of a Hydra sweep: one row per job with its overrides and final metrics.

`SweepSummary` is a Hydra callback (configs/train.yaml, `hydra.callbacks`). It reads what each job
left in its directory (`.hydra/overrides.yaml`, the last line of `metrics.jsonl` and `status.json`),
so it works whichever launcher ran the jobs and in whichever process. A sweep with a failed job
ends with an `error:` line and exit status 2, after every job ran. Kept free of JAX imports:
Hydra builds its callbacks at every start of train.py.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from zoo.app.job_status import failures, read_status, run_recorded
from zoo.errors import ZooError
from zoo.files import write_atomically
from zoo.reporting.metrics_log import natural_key, read_metrics
from zoo.reporting.run_context import sweep_dir_of
from zoo.reporting.tables import format_table as aligned_table
from zoo.untrusted import load_yaml

SUMMARY = "summary.csv"


def run_job(job_dir: str | os.PathLike, task: Callable[[], Any]) -> Any:
    """Run one job of a sweep (zoo.app.job_status.run_recorded: a failed job does not end the
    sweep), then end the sweep with RunStopped if a SIGTERM or Ctrl-C came while the job was
    finishing (its last dispatch, its final save): the job is done and recorded, and the next
    one does not start."""
    from hydra.core.hydra_config import HydraConfig

    from zoo.errors import RunStopped
    from zoo.training.interrupts import NAMES, take_unanswered

    take_unanswered()  # only what reaches this job counts
    value = run_recorded(job_dir, task)
    signum = take_unanswered()
    if signum is not None:
        sweep_dir = sweep_dir_of(job_dir, str(HydraConfig.get().sweep.subdir))
        summarize(sweep_dir)  # Hydra's end-of-job callbacks do not run after this
        raise RunStopped(
            f"{NAMES[signum]} during the end of job {Path(job_dir).relative_to(sweep_dir)}: the "
            "job finished, the sweep stops before the next one; run the rest with "
            "trainer.resume=true and the same hydra.sweep.dir",
            exit_code=128 + signum,
        )
    return value


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under `sweep_dir`: `job`, its overrides, its `status` (ok,
    diverged or failed, once it ended), its last logged metrics, and the `error` line of a job
    that failed."""
    rows = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml"), key=natural_key):
        job_dir = overrides_file.parent.parent
        row: dict[str, Any] = {"job": job_dir.relative_to(sweep_dir).as_posix()}
        for override in _overrides(overrides_file):
            key, _, value = str(override).partition("=")
            row[key] = value
        status = read_status(job_dir)  # none yet for a job that is running or was killed
        row |= {"status": status["status"]} if status else {}
        row |= (read_metrics(job_dir / "metrics.jsonl") or [{}])[-1]
        row |= {"error": status["error"]} if "error" in status else {}
        rows.append(row)
    return rows


def _overrides(path: Path) -> list[Any]:
    """A job's `.hydra/overrides.yaml` (read as hostile: `zoo.untrusted`); [] if unreadable."""
    try:
        items = OmegaConf.to_container(load_yaml(path))
    except ZooError:
        return []
    return items if isinstance(items, list) else []


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the rows as CSV atomically: a reader sees the old table or the new one, whole."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table, floats to 6 significant digits."""
    columns = _columns(rows)

    def cell(value: Any) -> str:
        return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else str(value))

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    return aligned_table(columns, cells, left=len(columns), rule=False)


def summarize(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Collect the sweep's jobs and (re)write `summary.csv` in `sweep_dir`; return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if rows:
        write_csv(rows, sweep_dir / SUMMARY)
    return rows


class SweepSummary(Callback):
    """Keeps `summary.csv` in the sweep directory up to date and prints it when the sweep ends."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # Refreshed after every job (in the job's process) so a sweep that stops early still
        # leaves a table of the jobs that finished.
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        summarize(sweep_dir_of(config.hydra.runtime.output_dir, str(config.hydra.sweep.subdir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = summarize(sweep_dir)
        if rows:
            print(f"sweep summary ({sweep_dir / SUMMARY}):\n{format_table(rows)}", flush=True)
            from zoo.app.sweep_plot import plot_sweep
            from zoo.errors import ZooError

            try:
                print(f"sweep plot: {plot_sweep(sweep_dir)}", flush=True)
            except ZooError as err:  # e.g. no job got to an evaluation
                print(f"no sweep plot: {err}", flush=True)
        failed = failures(rows)
        if failed:  # the sweep went on past them; its exit status still says so
            jobs = ", ".join(f"{row['job']} ({row['status']})" for row in failed)
            print(f"error: {len(failed)} of {len(rows)} jobs failed: {jobs}", file=sys.stderr)
            sys.exit(2)
