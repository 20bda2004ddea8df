"""The command-line apps `zoo-train` and `zoo-eval` (also `python train.py`, `python eval.py` in
a checkout), and what they share: one line and a non-zero exit for a user's mistake."""

from __future__ import annotations

import functools
import gc
import io
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from zoo.errors import RunStopped, ZooError
from zoo.interrupts import discard_run_dir_if_unused as discard_if_unused
from zoo.interrupts import stop_at_once_on_sigterm

# JAX logs its search for a TPU at INFO, which Hydra's logging would print on every run.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
# Orbax logs every step of every save at INFO through absl.
logging.getLogger("absl").setLevel(logging.WARNING)
# Alembic (under Optuna and MLflow's stores) logs its plugins and migrations at INFO.
logging.getLogger("alembic").setLevel(logging.WARNING)

# Hydra's words (a ValueError with a traceback) for a group set to null on the command line
NULL_GROUP = "Config group override must be a string or a list"
_held: list[tuple[Any, io.StringIO]] = []  # (real stderr, what Hydra wrote before the job)


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _release_stderr() -> str:
    """Give stderr back; return what was held."""
    if not _held:
        return ""
    real, held = _held.pop()
    sys.stderr = real
    return held.getvalue()


def one_line(hydra_message: str, overrides: Sequence[str] = ()) -> str:
    """Hydra's multi-line composition error as one line: what is wrong, and the valid options.
    `overrides`: the command line's, to name the one a traceback from Hydra is about."""
    zoo_errors = [line for line in hydra_message.splitlines() if line.startswith("error: ")]
    if zoo_errors:  # a job in another process (e.g. a submitit launcher) failed on a bad value
        return zoo_errors[-1].removeprefix("error: ")
    if "Traceback (most recent call last):" in hydra_message or NULL_GROUP in hydra_message:
        return _traceback_line(hydra_message, overrides)
    refused = re.search(r"Could not override '([\w.]+)'.*?not in '(\w+)'", hydra_message, re.S)
    if refused and "Key '" in hydra_message:  # a key no schema declares
        from zoo.config import unknown_key

        return unknown_key(*refused.groups())
    parts, options = [], []
    in_options = False
    for raw in hydra_message.splitlines():
        line = raw.strip()
        if not line or line.startswith(("Set the environment variable", "object_type=")):
            continue
        if line.startswith("Config search path"):
            break
        if line.startswith("Available options"):
            in_options = True
            parts.append(line.rstrip(":").lower())
        elif in_options and raw.startswith("\t"):
            if not line.startswith("zoo_"):  # the schemas are not choices
                options.append(line)
        else:
            parts.append(line)
    text = "; ".join(parts)
    text = f"{text}: {', '.join(options)}" if options else text
    if "Could not find 'hydra/sweeper/optuna'" in text:  # hparams_search=... needs the extra
        text += "; pip install 'zoo[optuna]' (make install includes it)"
    return text


def _traceback_line(message: str, overrides: Sequence[str]) -> str:
    """The exception a traceback ends with, as one line (Hydra prints a whole traceback for an
    error that is not one of its own, e.g. a group set to null)."""
    raised = [
        line
        for line in message.splitlines()
        if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line)
    ]
    text = raised[-1] if raised else message.strip().splitlines()[-1]
    if NULL_GROUP in text:
        groups = [o.partition("=")[0] for o in overrides if re.fullmatch(r"[\w/]+=null", o)]
        group = groups[0] if groups else "<group>"
        return (
            f"{group}=null: a config group cannot be set to null on the command line; leave it "
            f"out (its default), or remove the option a config chose with ~{group}"
        )
    return text[:500]


def use_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache unless the user configured it: a second run of
    the same program loads its compiled steps instead of compiling them again.

    The directory is `$JAX_COMPILATION_CACHE_DIR`, default `~/.cache/zoo/jax`; set
    `JAX_COMPILATION_CACHE_DIR=` (empty) to turn it off. Must run before JAX is imported.
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache_home, "zoo", "jax"))
    # JAX caches only compiles over 1 s by default; the zoo's small steps matter too.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def run_hydra_app(hydra_main: Callable[[], Any]) -> None:
    """Run a `@hydra.main` function, turning a composition error (bad override, unknown key or
    option) into one line on stderr with exit status 2, and Ctrl-C or SIGTERM outside the
    training loop into one line with exit status 130 or 143. HYDRA_FULL_ERROR=1 shows all of
    it."""
    use_compilation_cache()
    previous = stop_at_once_on_sigterm()
    try:
        _run_hydra_app(hydra_main)
    except KeyboardInterrupt:
        if _full_errors():
            raise
        discard_if_unused()
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
        _held.append((sys.stderr, io.StringIO()))
        sys.stderr = _held[-1][1]
        try:
            hydra_main()
        except SystemExit as exit_:
            held = _release_stderr()
            if exit_.code not in (0, None) and held:
                print(f"error: {one_line(held, sys.argv[1:])}", file=sys.stderr)
                sys.exit(2)
            sys.stderr.write(held)
            raise
        finally:
            sys.stderr.write(_release_stderr())
    finally:
        # The app is done: spare the interpreter's exit its garbage-collector passes over the
        # whole heap (JAX, orbax, matplotlib), about 0.4 s of every run. Files are closed already.
        gc.freeze()


def report_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ZooError into `error: <message>` on stderr and exit status 2, and a RunStopped
    into `stopped: <message>` and its exit status.

    Set HYDRA_FULL_ERROR=1 to see the traceback instead.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sys.stderr.write(_release_stderr())  # the job has started: Hydra composed fine
        try:
            return main(*args, **kwargs)
        except ZooError as err:
            discard_if_unused()  # a run refused before any result leaves no directory behind
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

    from zoo.config import config_dir

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
        from zoo.sweep import run_job

        return run_job(run_dir, lambda: _train(cfg, run_dir))
    return _train(cfg, run_dir)


def _train(cfg: Any, run_dir: str) -> float:
    from zoo.config import validate

    validate(cfg, "train")
    from zoo.training import train

    metrics = train(cfg, run_dir)
    # What a sweeper (hparams_search=...) minimises: the monitored metric's best value.
    best = metrics.get("optimized_metric")
    return best if best is not None else metrics.get("val_loss", float("nan"))


def _eval_task(cfg: Any) -> None:
    from zoo.config import validate

    validate(cfg, "eval")
    from zoo.evaluation import compare_with_reference, evaluate_run, print_summary, print_weights

    if cfg.mode == "summary":
        print_summary(cfg)
    elif cfg.mode in ("inspect", "diff"):
        if not print_weights(cfg):
            sys.exit(1)  # as diff(1): the two sources differ
    elif cfg.run_dir is not None:
        evaluate_run(cfg.run_dir)
    elif not compare_with_reference(cfg):
        sys.exit(1)


def train_main() -> None:
    """`zoo-train [overrides]`: train a model (`python train.py` in a checkout)."""
    stop_at_once_on_sigterm()  # first of all: SIGTERM during start-up is one line, as Ctrl-C is
    from zoo import plotter, startup

    startup.pause_gc()  # until the first steps have run (zoo.training)
    plotter.start()  # early: it imports matplotlib while this process starts the run
    code = train_app()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ending now anyway, with `code`
    startup.exit_now(code)  # files are closed: skip the interpreter's teardown


def train_app() -> object:
    """What `zoo-train` does with `sys.argv`, short of ending the process: its exit code."""
    from zoo import plotter
    from zoo.config import register_configs

    code: object = 0
    try:
        use_compilation_cache()
        register_configs()
        run_hydra_app(_hydra_app("train", _train_task))
    except SystemExit as exit_:
        code = exit_.code
    finally:
        plotter.finish()  # loss.png is there when the app returns
    return code


def eval_main() -> None:
    """`zoo-eval [overrides]`: a model beside the seed's function, a run's validation loss
    (`run_dir=`), a parameter table (`mode=summary`), saved weights' statistics
    (`mode=inspect source=...`) or differences (`mode=diff a=... b=...`); `python eval.py` in a
    checkout."""
    from zoo.config import register_configs

    use_compilation_cache()
    register_configs()
    run_hydra_app(_hydra_app("eval", _eval_task))
