"""A jax.profiler trace of a few of a run's fused dispatches (`trainer.profile_chunks`,
`debug=profile`), for TensorBoard's profile plugin or Perfetto."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ChunkProfile:
    """Context manager; call `chunk_done()` after each dispatch's record. Traces the `chunks`
    dispatches after the first (which compiles) into `directory`; `chunks=0` does nothing.

    The loop's dispatch for a log point runs when the loop asks for its record, so tracing from
    the end of one record to the end of a later one covers exactly the dispatches between."""

    def __init__(self, directory: str | Path, chunks: int) -> None:
        self.directory = Path(directory)
        self.chunks = chunks
        self.done = 0
        self.tracing = False

    def __enter__(self) -> ChunkProfile:
        return self

    def chunk_done(self) -> None:
        if not self.chunks:
            return
        self.done += 1
        if self.done == 1:
            import jax

            # create_perfetto_trace: also a trace file that ui.perfetto.dev opens directly.
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.tracing = True
        elif self.done == 1 + self.chunks:
            self._stop()

    def _stop(self) -> None:
        if self.tracing:
            import jax

            jax.profiler.stop_trace()
            self.tracing = False
            log.info(
                "profile of %d dispatches in %s (tensorboard --logdir %s, or its "
                "perfetto_trace.json.gz in ui.perfetto.dev)",
                self.done - 1,
                self.directory,
                self.directory,
            )

    def __exit__(self, *exc: object) -> None:
        self._stop()  # a run shorter than the trace still closes it


def log_compiled_memory(train_chunk: Any, state: Any, x: Any, y: Any, length: int) -> None:
    """Log the memory XLA's compiled program of `length` fused steps needs on one device (its
    arguments, outputs and temporaries: what sharding and `model.remat` change). Compiling here
    ahead of the first dispatch costs no second compilation: the dispatch finds the program."""
    from zoo.memory import human

    stats = train_chunk.lower(state, x, y, length=length).compile().memory_analysis()
    if stats is None:  # a backend without the analysis
        return
    # live at once at worst: the inputs, the outputs (less those written over the donated
    # inputs) and the temporaries (XLA's own peak_memory_in_bytes counts only some of these)
    peak = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )
    log.info(
        "compiled program of %d steps: peak %s per device (arguments %s, outputs %s, "
        "temporaries %s)",
        length,
        human(peak),
        human(stats.argument_size_in_bytes),
        human(stats.output_size_in_bytes),
        human(stats.temp_size_in_bytes),
    )
