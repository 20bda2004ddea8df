"""Training: the state (`state.py`), the build from a config (`build.py`), the jitted steps
(`steps.py`), the loop (`loop.py`) and `train()` around it (`run.py`), with the best model and
early stopping (`monitor.py`), memory (`footprint.py`), devices (`parallel.py`), stop requests
(`interrupts.py`), run directories (`run_dir.py`), `init.from` (`init_from.py`) and profiles
(`profiling.py`)."""
