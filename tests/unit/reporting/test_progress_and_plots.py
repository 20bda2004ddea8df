"""What a run shows and draws: progress lines and the bar, loss.png, TensorBoard scalars, the plot
helper's fallback."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys

import pytest
from conftest import compose_config
from helpers import RECORDS, read_scalars
from matplotlib.image import imread

from zoo.reporting.plots import log_scale_helps as _log_scale_helps
from zoo.reporting.plots import plot_losses
from zoo.reporting.progress import Progress
from zoo.training.run import train


@contextlib.contextmanager
def hydra_like_logging(path):
    """A console handler on (captured) stdout and a file handler, like Hydra's job logging."""
    root = logging.getLogger()
    console, logfile = logging.StreamHandler(sys.stdout), logging.FileHandler(path)
    saved_handlers, saved_level = root.handlers, root.level
    root.handlers = [console, logfile]
    root.setLevel(logging.INFO)  # setLevel, unlike assigning .level, clears the loggers' caches
    try:
        yield path
    finally:
        logfile.close()
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def test_without_a_terminal_each_log_point_is_one_line_on_console_and_in_the_file(tmp_path, capsys):
    with hydra_like_logging(tmp_path / "log") as logfile, Progress(300, bar=False) as progress:
        for record in RECORDS:
            progress.update(record)
    console = capsys.readouterr().out.splitlines()
    steps = [line for line in console if line.startswith("step=")]
    assert steps[1].startswith("step=200/300 train_loss=0.1 val_loss=0.2 val_accuracy=0.8 steps/s=")
    assert len(steps) == 3
    logged = logfile.read_text().splitlines()
    assert [line for line in logged if line.startswith("step=")] == steps  # same, once each


def test_on_a_terminal_the_bar_shows_progress_and_the_file_keeps_every_line(tmp_path, capsys):
    screen = io.StringIO()
    with hydra_like_logging(tmp_path / "log") as logfile:
        with Progress(300, bar=True, file=screen) as progress:
            for record in RECORDS[:2]:
                progress.update(record)
                assert progress._bar.n == record["step"]  # advanced only here, at log points
            logging.getLogger("zoo.test").info("another message")
            progress.update(RECORDS[2])
        # the console handler is back to normal afterwards
        logging.getLogger("zoo.test").info("step=1/1 after the bar")
    bar = screen.getvalue()
    assert "300/300" in bar and "step/s" in bar
    assert "train_loss=0.01 val_loss=0.1 val_accuracy=0.9" in bar
    assert "train_loss=0.1 val_loss=0.2" in bar  # validation kept on screen between evaluations
    console = capsys.readouterr().out
    assert "step=100/300" not in console  # the bar already shows it
    assert "another message" in console  # other logging still shows (above the bar)
    assert "step=1/1 after the bar" in console
    logged = logfile.read_text().splitlines()
    assert sum(line.startswith("step=") for line in logged) == 4
    assert len(logged) == len(set(logged))


def test_log_scale_only_when_values_span_more_than_ten_times():
    assert _log_scale_helps([1.0, 0.05])
    assert not _log_scale_helps([1.0, 0.5])
    assert not _log_scale_helps([1.0, 0.0])


def test_loss_picture_has_an_accuracy_panel_only_for_classification(tmp_path):
    regression = [{k: v for k, v in r.items() if k != "val_accuracy"} for r in RECORDS]
    one = imread(plot_losses(regression, tmp_path / "r.png"))
    two = imread(plot_losses(RECORDS, tmp_path / "c.png", title="demo"))
    assert one.shape[0] == two.shape[0] and two.shape[1] > 1.5 * one.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "r.png"]  # no temp files


def test_a_run_leaves_loss_png_and_tensorboard_scalars(tmp_path):
    overrides = ["logger=tensorboard", "trainer.steps=200", "trainer.log_every=50"]
    cfg = compose_config("train", [*overrides, "trainer.eval_every=100"])
    train(cfg, tmp_path)
    assert imread(tmp_path / "loss.png").ndim == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (event_file,) = (tmp_path / "tensorboard").iterdir()
    scalars = read_scalars(event_file)
    expected = [(k, r["step"], v) for r in records for k, v in r.items() if k != "step"]
    assert sorted(scalars) == pytest.approx(sorted(expected))
