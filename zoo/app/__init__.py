"""The apps: `zoo-train` and `zoo-eval` (`cli.py`), `zoo.train` and `zoo.compose` (`api.py`),
Hydra's errors as one line (`hydra_errors.py`), what the apps do to their process
(`process.py`, `plot_helper.py`), the run directory's Hydra callback (`run_directory.py`),
sweeps (`sweep.py`, `sweep_plot.py`, `job_status.py`), evaluation (`evaluation.py`) and the
README's model table (`model_table.py`)."""
