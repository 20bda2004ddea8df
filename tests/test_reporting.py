"""What a run shows and leaves: progress lines or bar, loss.png, sweep.png, TensorBoard events."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import struct
import sys

import pytest
from matplotlib.image import imread

from tests.conftest import compose_config, run_script
from zoo.errors import ZooError
from zoo.plots import _log_scale_helps, plot_losses, plot_sweep
from zoo.progress import Progress
from zoo.training import train

RECORDS = [
    {"step": 100, "train_loss": 1.0},
    {"step": 200, "train_loss": 0.1, "val_loss": 0.2, "val_accuracy": 0.8},
    {"step": 300, "train_loss": 0.01, "val_loss": 0.1, "val_accuracy": 0.9},
]


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


def test_sweep_picture_from_job_folders(tmp_path):
    for job, lr in enumerate([0.1, 0.01]):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
        lines = [json.dumps({**r, "val_loss": r.get("val_loss", 1) * (job + 1)}) for r in RECORDS]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    image = imread(plot_sweep(tmp_path))
    assert image.ndim == 3 and (tmp_path / "sweep.png").exists()
    with pytest.raises(ZooError, match="no job folders"):
        plot_sweep(tmp_path / "0")


def test_sweep_picture_command_line(tmp_path):
    result = run_script("zoo/plots.py", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no job folders with a metrics.jsonl"


def read_scalars(event_file):
    """(tag, step, value) of every scalar in a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    data, scalars, at = event_file.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


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


def test_train_run_without_a_terminal_logs_lines_once_and_leaves_its_files(tmp_path):
    result = run_script(
        "train.py", "trainer.steps=300", "trainer.eval_every=150", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if "] - step=" in line]
    assert [line.split("] - ")[1].split(" train_loss")[0] for line in shown] == [
        "step=100/300",
        "step=150/300",
        "step=200/300",
        "step=300/300",
    ]
    logged = [line for line in (tmp_path / "train.log").read_text().splitlines() if line[:1] == "["]
    assert [line for line in logged if "] - step=" in line] == shown
    assert len(logged) == len(set(logged))  # no record logged twice
    assert "total" in result.stdout and "middle/inner/kernel" in result.stdout  # the summary
    assert {"loss.png", "metrics.jsonl", "model", "train.log"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert imread(tmp_path / "loss.png").ndim == 3  # drawn by zoo-train's plot helper
    assert "\r" not in result.stderr  # no bar drawn into a pipe


def test_a_plot_the_helper_cannot_draw_is_drawn_in_the_run(tmp_path):
    from zoo import plotter

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    plotter.start()
    plotter._helper.kill()  # a helper that died (or could not start)
    plotter._helper.wait()
    plotter.draw_losses(tmp_path / "metrics.jsonl", tmp_path / "loss.png", "demo")
    plotter.finish()
    assert imread(tmp_path / "loss.png").shape[2] in (3, 4)


def test_a_run_of_zero_steps_draws_no_loss_png_and_says_none(tmp_path, caplog):
    from zoo import plotter

    caplog.set_level(logging.INFO)
    plotter.start()  # as zoo-train does: the picture would be the helper's
    try:
        train(compose_config("train", ["trainer.steps=0"]), tmp_path)
    finally:
        plotter.finish()
    assert (tmp_path / "model").is_dir() and (tmp_path / "metrics.jsonl").read_text() == ""
    assert not (tmp_path / "loss.png").exists()
    assert "loss curves" not in caplog.text
