"""A run's `loss.png`, drawn by a helper process that imports matplotlib while the run starts.

Nothing before the end of a run needs matplotlib, whose import is a good part of a short run
(benchmarks/NOTES.md). So `zoo-train` enables this helper (`enable()`), and a run whose config
is valid and draws (trainer.plots=true) starts it (`start()`) before it imports JAX; `start`
installs it as the library's drawing delegate (zoo.reporting.plots.delegate_drawing). The helper
imports matplotlib on another core while the run imports JAX, builds and trains, and at the end
of each run the library's `draw_losses` hands it the drawing; `finish()` waits for the pictures
before the app exits. A refused run, or one that draws nothing, starts no helper. A picture
the helper could not draw is drawn in this process instead, so a run always leaves one (or the
error it got). Without a helper (`zoo.train`), the library draws.

The helper reads one request a line on stdin, (metrics.jsonl, loss.png, title) as JSON, and
answers each with one JSON line; it ends at the end of its input, so it never outlives the app.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from zoo.reporting import plots

log = logging.getLogger(__name__)

_enabled = False  # zoo-train's own process: `zoo.train` and in-process apps draw here
_helper: subprocess.Popen | None = None
_asked: list[tuple[Path, Path, str]] = []  # requests the helper has not answered yet


class _Helper:
    """The helper as zoo.reporting.plots' delegate."""

    def draw(self, metrics: Path, out: Path, title: str) -> None:
        ask(metrics, out, title)

    def wait(self) -> None:
        finish()


def enable() -> None:
    """Let `start` start a helper in this process (zoo-train's)."""
    global _enabled
    _enabled = True


def start() -> None:
    """Start the helper process (once per process, where enabled) and hand it the library's
    drawings."""
    global _helper
    if _helper is not None or not _enabled:
        return
    package_root = str(Path(__file__).resolve().parents[2])  # where `import zoo` finds this zoo
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    try:
        _helper = subprocess.Popen(
            [sys.executable, "-m", "zoo.app.plot_helper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=os.environ | {"PYTHONPATH": path},
        )
    except OSError as err:  # no helper: draw in this process
        log.debug("no plot helper (%s): loss.png is drawn in the run's process", err)
        return
    plots.delegate_drawing(_Helper())


def ask(metrics: Path, out: Path, title: str) -> None:
    """Ask the helper to draw `out` from the records in `metrics`, or draw it here if none runs."""
    if _helper is not None and _helper.poll() is None:
        request = {"metrics": str(metrics), "out": str(out), "title": title}
        try:
            _helper.stdin.write(json.dumps(request) + "\n")
            _helper.stdin.flush()
            _asked.append((metrics, out, title))
            log.info("loss curves in %s", out)
            return
        except OSError:
            pass
    plots.draw_here(metrics, out, title)


def finish() -> None:
    """Wait for the pictures asked of the helper; draw here any it could not. Then end it, and
    let the library draw in its own process again."""
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return
    plots.delegate_drawing(None)
    if not _asked:  # nothing to draw: do not wait for its imports
        helper.kill()
        helper.wait()
        return
    helper.stdin.close()
    answers = helper.stdout.read().splitlines()
    helper.wait()
    answers += [""] * (len(_asked) - len(answers))  # a helper that died answered no more
    for (metrics, out, title), answer in zip(_asked, answers, strict=True):
        if answer != json.dumps({"drew": str(out)}):
            log.debug("the plot helper did not draw %s (%s): drawing it here", out, answer)
            plots.draw_here(metrics, out, title)
    _asked.clear()


def _serve() -> None:
    """The helper: import matplotlib now, then draw what each line of stdin asks."""
    import tempfile

    from zoo.reporting.metrics_log import read_metrics
    from zoo.reporting.plots import plot_losses

    # A first picture loads fonts and fills matplotlib's caches: draw one now, not at the end.
    with tempfile.TemporaryDirectory() as scratch:
        warm_up = [{"step": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5}]
        plot_losses(warm_up, Path(scratch) / "warm_up.png", "warm-up")

    for line in sys.stdin:
        request = json.loads(line)
        try:
            records = read_metrics(Path(request["metrics"]))
            if records:
                plot_losses(records, request["out"], request["title"])
            answer = {"drew": request["out"]} if records else {"error": "no records"}
        except Exception as err:  # reported to the run, which draws it itself
            answer = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _serve()
    # Answered and flushed: skip the interpreter's teardown (matplotlib's modules), which the
    # run would wait for at its end (`finish`).
    os._exit(0)
