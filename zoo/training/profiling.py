"""A jax.profiler trace of a few of a run's fused dispatches (`trainer.profile_chunks`,
`debug=profile`), for TensorBoard's profile plugin or Perfetto."""

from __future__ import annotations

import logging
from pathlib import Path

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
