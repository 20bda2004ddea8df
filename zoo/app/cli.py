"""The command-line apps `zoo-train`, `zoo-eval`, `zoo-predict` and `zoo-export` (also `python
train.py`, `python eval.py`, ... in a checkout), and what they share: one line and a non-zero
exit for a user's mistake."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from zoo.app import process
from zoo.app.hydra_errors import one_line
from zoo.errors import RunStopped, ZooError

# JAX logs its search for a TPU at INFO, which Hydra's logging would print on every run.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
# Orbax logs every step of every save at INFO through absl.
logging.getLogger("absl").setLevel(logging.WARNING)
# Alembic (under Optuna and MLflow's stores) logs its plugins and migrations at INFO.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def run_hydra_app(hydra_main: Callable[[], Any]) -> None:
    """Run a `@hydra.main` function, turning a composition error (bad override, unknown key or
    option) into one line on stderr with exit status 2, and Ctrl-C or SIGTERM outside the
    training loop into one line with exit status 130 or 143. HYDRA_FULL_ERROR=1 shows all of
    it."""
    from zoo.app.compose_once import compose_once

    process.use_compilation_cache()
    previous = process.stop_at_once_on_sigterm()
    try:
        with compose_once():
            _run_hydra_app(hydra_main)
    except KeyboardInterrupt:
        if _full_errors():
            raise
        process.discard_run_dir_if_unused()
        print("stopped: Ctrl-C (SIGINT)", file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_hydra_app(hydra_main: Callable[[], Any]) -> None:
    try:
        if _full_errors():
            hydra_main()
            return
        process.hold_stderr()
        try:
            hydra_main()
        except SystemExit as exit_:
            held = process.release_stderr()
            if exit_.code not in (0, None) and held:
                print(f"error: {one_line(held, sys.argv[1:])}", file=sys.stderr)
                sys.exit(2)
            sys.stderr.write(held)
            raise
        finally:
            sys.stderr.write(process.release_stderr())
    finally:
        # The app is done: spare the interpreter's exit its garbage-collector passes over the
        # whole heap (JAX, orbax, matplotlib). Files are closed already.
        process.freeze_heap()


def report_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ZooError into `error: <message>` on stderr and exit status 2, and a RunStopped
    into `stopped: <message>` and its exit status.

    Set HYDRA_FULL_ERROR=1 to see the traceback instead.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sys.stderr.write(process.release_stderr())  # the job has started: Hydra composed fine
        try:
            return main(*args, **kwargs)
        except ZooError as err:
            process.discard_run_dir_if_unused()  # a refused run leaves no directory behind
            if _full_errors():
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except RunStopped as stop:
            print(f"stopped: {stop}", file=sys.stderr)
            sys.exit(stop.exit_code)

    return wrapper


# --- the apps ----------------------------------------------------------------------------------


def _hydra_app(config_name: str, task: Callable[[Any], Any]) -> Callable[[], Any]:
    import hydra

    from zoo.config.store import config_dir

    directory = config_dir()
    if directory is None:
        print("error: the zoo's configs are missing from this installation", file=sys.stderr)
        sys.exit(2)
    return hydra.main(config_path=str(directory), config_name=config_name, version_base="1.3")(
        report_user_errors(task)
    )


def _train_task(cfg: Any) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    run_dir = HydraConfig.get().runtime.output_dir
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # a failed job must not end the sweep
        from zoo.app.sweep import run_job

        return run_job(run_dir, lambda: _train(cfg, run_dir))
    return _train(cfg, run_dir)


def _train(cfg: Any, run_dir: str) -> float:
    from zoo.config.validate import validate

    validate(cfg, "train")
    if cfg.trainer.plots:  # before JAX's import, which the helper's import of matplotlib overlaps
        from zoo.app import plot_helper

        plot_helper.start()
    from zoo.training.run import ProcessHooks, train

    hooks = ProcessHooks(after_chunk=process.resume_gc, second_interrupt=process.stop_at_once)
    metrics = train(cfg, run_dir, hooks)
    # What a sweeper (hparams_search=...) minimises: the monitored metric's best value.
    best = metrics.get("optimized_metric")
    return best if best is not None else metrics.get("val_loss", float("nan"))


def _chose(group: str) -> bool:
    """Whether the command line chose an option of `group` (`data=text`)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # called outside a Hydra app (from Python)
        return False
    overrides = HydraConfig.get().overrides.task
    return any(o.lstrip("+~").split("=")[0] == group for o in overrides)


def _eval_task(cfg: Any) -> None:
    from zoo.config.validate import validate

    validate(cfg, "eval")
    from zoo.app.evaluation import (
        compare_with_reference,
        evaluate_run,
        print_summary,
        print_weights,
    )

    if cfg.mode == "summary":
        print_summary(cfg)
    elif cfg.mode == "export_hf":
        from zoo.app.evaluation import export_hf

        export_hf(cfg)
    elif cfg.mode in ("inspect", "diff"):
        if not print_weights(cfg):
            sys.exit(1)  # as diff(1): the two sources differ
    elif cfg.run_dir is not None:  # on the data the command line chose, else the run's own
        evaluate_run(cfg.run_dir, cfg.data if _chose("data") else None)
    elif not compare_with_reference(cfg):
        sys.exit(1)


def train_main() -> None:
    """`zoo-train [overrides]`: train a model (`python train.py` in a checkout)."""
    process.stop_at_once_on_sigterm()  # first: SIGTERM at start-up is one line, as Ctrl-C is
    from zoo.app import plot_helper

    process.pause_gc()  # until the first steps have run (ProcessHooks.after_chunk)
    plot_helper.enable()  # a run that draws loss.png starts it once its config is known
    code = train_app()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ending now anyway, with `code`
    process.exit_now(code)  # files are closed: skip the interpreter's teardown


def train_app() -> object:
    """What `zoo-train` does with `sys.argv`, short of ending the process: its exit code."""
    from zoo.app import plot_helper
    from zoo.config.store import register_configs

    code: object = 0
    try:
        process.use_compilation_cache()
        register_configs()
        run_hydra_app(_hydra_app("train", _train_task))
    except SystemExit as exit_:
        code = exit_.code
    finally:
        plot_helper.finish()  # loss.png is there when the app returns
    return code


def eval_main() -> None:
    """`zoo-eval [overrides]`: a model beside the seed's function, a run's validation loss
    (`run_dir=`), a parameter table (`mode=summary`), saved weights' statistics
    (`mode=inspect source=...`) or differences (`mode=diff a=... b=...`); `python eval.py` in a
    checkout."""
    from zoo.config.store import register_configs

    process.use_compilation_cache()
    register_configs()
    run_hydra_app(_hydra_app("eval", _eval_task))


def _predict_task(cfg: Any) -> None:
    from zoo.config.validate import validate

    validate(cfg, "predict")
    from zoo.app.predict import predict

    predict(cfg)


def predict_main() -> None:
    """`zoo-predict source=... input=... output=...`: a saved model's predictions on a file
    (`python predict.py` in a checkout)."""
    from zoo.config.store import register_configs

    process.use_compilation_cache()
    register_configs()
    run_hydra_app(_hydra_app("predict", _predict_task))


def _export_task(cfg: Any) -> None:
    from zoo.config.validate import validate

    validate(cfg, "export")
    from zoo.app.export import export

    export(cfg)


def export_main() -> None:
    """`zoo-export source=... out=... [format=onnx]`: a saved model as a file that runs without
    the zoo (`python export.py` in a checkout)."""
    from zoo.config.store import register_configs

    process.use_compilation_cache()
    register_configs()
    run_hydra_app(_hydra_app("export", _export_task))
