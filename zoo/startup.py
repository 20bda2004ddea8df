"""The app's start and end, made cheap: no garbage-collector passes while it starts, and no
interpreter teardown once it is done.

A run's first seconds import JAX, Flax, Hydra and orbax, build the model and trace its steps,
allocating millions of objects and no garbage worth collecting; the collector's passes over that
growing heap cost about 15% of it. `zoo-train` pauses the collector first thing; the training
loop resumes it once the first steps have run, after freezing the start-up's objects out of every
later pass (`gc.freeze`).

At the end, JAX's exit handler clears every cache and backend and the interpreter then tears down
every module: about half a second in which nothing is written. Once the app has closed its files
and flushed its logs, `exit_now` ends the process directly instead.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys

_paused = False


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
