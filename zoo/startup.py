"""Start-up without the garbage collector's passes: a run's first seconds import JAX, Flax, Hydra
and orbax, build the model and trace its steps, allocating millions of objects and no garbage
worth collecting; the collector's passes over that growing heap cost about 15% of it.

`zoo-train` pauses the collector first thing; the training loop resumes it once the first steps
have run, after freezing the start-up's objects out of every later pass (`gc.freeze`).
"""

from __future__ import annotations

import gc

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
