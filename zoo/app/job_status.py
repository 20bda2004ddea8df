"""How each job of a sweep ended, kept in its directory as `status.json`, so that a sweep goes on
past a job that diverged or failed with a user's mistake, and the summary, the sweep plot and the
command's exit status can tell (whichever launcher ran the jobs, in whichever process).

`{"status": "ok" | "diverged" | "failed", "error": "<the error line>"}`. Free of JAX and Hydra.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import Diverged, RunStopped, ZooError
from zoo.files import write_atomically

STATUS = "status.json"
TRACEBACK = "traceback.txt"  # the whole traceback of a job that failed with an unexpected error
OK, DIVERGED, FAILED = "ok", "diverged", "failed"


def write_status(job_dir: str | Path, status: str, error: str = "") -> None:
    record = {"status": status} | ({"error": error} if error else {})
    write_atomically(Path(job_dir) / STATUS, json.dumps(record) + "\n")


def read_status(job_dir: str | Path) -> dict[str, str]:
    """The job's `status` and `error`; {} for a job that left none (still running, or killed)."""
    try:
        record = json.loads((Path(job_dir) / STATUS).read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: str(record[k]) for k in ("status", "error") if k in record}


def run_recorded(job_dir: str | Path, task: Callable[[], Any]) -> Any:
    """Run one sweep job's `task` and record how it ended. A ZooError (a bad value, a diverged
    run) is reported as its `error:` line and the job returns None, so the sweep goes on: Hydra's
    basic sweeper ignores the value, and the Optuna sweeper records a trial without a number as
    failed (a nan would crash it: it tells Optuna a failed trial's value).

    Any other exception (a bug) fails the job the same way, its traceback kept in the job's
    `traceback.txt` (HYDRA_FULL_ERROR=1 raises it instead). A stop request (RunStopped) and
    Ctrl-C are not failures of the job: they end the sweep."""
    try:
        value = task()
    except ZooError as err:
        write_status(job_dir, DIVERGED if isinstance(err, Diverged) else FAILED, str(err))
        print(f"error: {err}", file=sys.stderr, flush=True)
        return None
    except RunStopped:
        raise
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        kept = Path(job_dir) / TRACEBACK
        write_atomically(kept, traceback.format_exc())
        first = (str(err).strip().splitlines() or [""])[0][:300]
        line = f"unexpected {type(err).__name__}{': ' + first if first else ''} (traceback: {kept})"
        write_status(job_dir, FAILED, line)
        print(f"error: {line}", file=sys.stderr, flush=True)
        return None
    write_status(job_dir, OK)
    return value


def failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary rows of the jobs that diverged or failed."""
    return [row for row in rows if row.get("status") in (DIVERGED, FAILED)]
