"""What a run reports: the reporter (`reporter.py`), progress (`progress.py`), the loggers
(`loggers.py`, their settings `logger_settings.py`, their checks `logger_checks.py`, the run's
context `run_context.py`), loss.png (`plots.py`), metrics.jsonl (`metrics_log.py`), the
parameter table (`summary.py`) and the one text-table formatter (`tables.py`)."""
