"""What the apps do to their own process, and only the apps: the library (`zoo.train`, the loop)
knows nothing of it.

- Start-up and end made cheap. A run's first seconds import JAX, Flax, Hydra and orbax, build the
  model and trace its steps, allocating millions of objects and no garbage worth collecting:
  `zoo-train` pauses the cyclic garbage collector first thing and resumes it once the first steps
  have run, after freezing the start-up's objects out of every later pass (`gc.freeze`). At the
  end, JAX's exit handler clears every cache and backend and the interpreter tears down every
  module, in which nothing is written: once the app has closed its files and flushed its logs,
  `exit_now` ends the process directly. (benchmarks/NOTES.md has what each saves.)
- JAX's persistent compilation cache, turned on through the environment before JAX is imported.
- Signals outside the training loop, where there is nothing to save: SIGTERM ends the process at
  once with one line (`stop_at_once_on_sigterm`), and so does a second Ctrl-C inside it
  (`stop_at_once`, handed to the run as its `second_interrupt`).
- stderr held back while Hydra composes, so that its multi-line errors become one line
  (zoo/app/hydra_errors.py words them).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import signal
import sys
import threading
from typing import Any

_paused = False
_held: list[tuple[Any, io.StringIO]] = []  # (real stderr, what Hydra wrote before the job)


# --- the garbage collector and the end of the process -------------------------------------------


def pause_gc() -> None:
    """Turn the cyclic garbage collector off until `resume_gc()`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_gc() -> None:
    """Turn the collector back on if `pause_gc` turned it off; later passes skip what exists now."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def freeze_heap() -> None:
    """Move every object that exists now out of the collector's later passes (the app is done:
    its exit need not walk the whole heap)."""
    gc.freeze()


def exit_now(code: object = 0) -> None:
    """End the process with `code` (as `sys.exit` takes it) without the interpreter's teardown:
    logs and standard streams are flushed, and a multi-process JAX run leaves its coordinator
    properly; everything else the app wrote is closed already."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints it and exits with 1
        print(code, file=sys.stderr)
        status = 1
    if "jax" in sys.modules:
        import jax

        if jax.distributed.is_initialized():
            jax.distributed.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing left to lose
            stream.flush()
    os._exit(status)


# --- JAX's compilation cache --------------------------------------------------------------------


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


# --- signals ------------------------------------------------------------------------------------


def discard_run_dir_if_unused() -> None:
    """`zoo.app.run_directory.discard_if_unused()` if this process has imported that module
    (which claims the run directory): never imported here, where a signal may have cut an import
    short, and so that the apps handle signals before they import Hydra."""
    module = sys.modules.get("zoo.app.run_directory")
    discard = getattr(module, "discard_if_unused", None)
    if discard is not None:
        discard()


def stop_at_once_on_sigterm() -> Any:
    """Make SIGTERM end the process at once, with one `stopped: SIGTERM` line and status 143 (a
    run's StopRequest takes SIGTERM over while it is active, and hands it back). Returns the
    handler it replaced; elsewhere than the main thread it does nothing and returns None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _stop_at_once)


def _stop_at_once(signum: int, frame: Any) -> None:
    # Not an exception raised where the program is, as Ctrl-C's KeyboardInterrupt: inside an
    # import or a library's cleanup it comes out as another error (numpy's C extension turns it
    # into an ImportError, an interrupted OmegaConf update into an AttributeError). Outside the
    # loop nothing is open that an exit would leave half-written: files are written under
    # temporary names and renamed (a run's next start removes what is left), and a run directory
    # this process made and wrote no result into is removed, as after a refusal.
    discard_run_dir_if_unused()
    # the process's own stderr: the apps hold sys.stderr back while Hydra composes
    print("stopped: SIGTERM", file=sys.__stderr__ or sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:  # the run's log file
        handler.flush()
    os._exit(128 + signal.SIGTERM)


def stop_at_once() -> None:
    """A second Ctrl-C during training: stop at once, as SIGKILL would (the metrics log and the
    checkpoints are made to survive that: a resume cuts the log back to the latest whole
    checkpoint), with one line instead of a traceback from every thread, and status 130."""
    print(
        "stopped: Ctrl-C twice: stopped at once; continue from the latest checkpoint "
        "with trainer.resume=true and the same hydra.run.dir",
        file=sys.stderr,
        flush=True,
    )
    for handler in logging.getLogger().handlers:  # the run's log file
        handler.flush()
    os._exit(128 + signal.SIGINT)


# --- stderr while Hydra composes ----------------------------------------------------------------


def hold_stderr() -> None:
    """Keep what is written to stderr from now on, until `release_stderr`."""
    _held.append((sys.stderr, io.StringIO()))
    sys.stderr = _held[-1][1]


def release_stderr() -> str:
    """Give stderr back; return what was held."""
    if not _held:
        return ""
    real, held = _held.pop()
    sys.stderr = real
    return held.getvalue()
