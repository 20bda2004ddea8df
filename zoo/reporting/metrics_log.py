"""Reading a run's metrics.jsonl: one JSON object per log point, each with an integer `step`."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def parse_records(
    lines: Iterable[str], path: str | Path, *, strict: bool
) -> list[dict[str, Any] | None]:
    """Each line's record, None for a blank line. A line that is not a record with an integer
    `step` is a ZooError naming the file and line when `strict`, else None."""
    records: list[dict[str, Any] | None] = []
    for number, line in enumerate(lines, 1):
        record = None
        if line.strip():
            with contextlib.suppress(json.JSONDecodeError, RecursionError):
                record = json.loads(line)
            step = record.get("step") if isinstance(record, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                if strict and step is not None:
                    raise ZooError(f"{path}:{number}: step {repr(step)[:60]} is not an integer")
                if strict:
                    raise ZooError(f"{path}:{number}: not a metrics record: {line[:60]!r}")
                record = None
        records.append(record)
    return records


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, [] if it is missing; lines that are not records (a line
    cut short by a run that died while writing) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [r for r in parse_records(lines, path, strict=False) if r is not None]


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts job 10 after job 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]
