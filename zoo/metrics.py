"""Reading a run's metrics.jsonl: one JSON object per log point."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The records of a metrics.jsonl, [] if it is missing; lines that are not JSON records
    (a line cut short by a run that died while writing) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records
