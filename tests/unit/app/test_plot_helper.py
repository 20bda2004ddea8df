"""zoo-train's plot helper process: the library hands it loss.png, and draws it itself when the
helper cannot; a run of zero steps draws nothing; a run that draws nothing, or is refused, starts
no helper."""

from __future__ import annotations

import json
import logging

from conftest import compose_config
from helpers import RECORDS, train_app_in_process
from matplotlib.image import imread

from zoo.reporting import plots
from zoo.training.run import train


def test_a_plot_the_helper_cannot_draw_is_drawn_in_the_run(tmp_path, monkeypatch):
    from zoo.app import plot_helper as plotter

    monkeypatch.setattr(plotter, "_enabled", True)  # as zoo-train does
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    plotter.start()
    plotter._helper.kill()  # a helper that died (or could not start)
    plotter._helper.wait()
    plots.draw_losses(tmp_path / "metrics.jsonl", tmp_path / "loss.png", "demo")
    plotter.finish()
    assert imread(tmp_path / "loss.png").shape[2] in (3, 4)


def test_a_run_of_zero_steps_draws_no_loss_png_and_says_none(tmp_path, caplog, monkeypatch):
    from zoo.app import plot_helper as plotter

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(plotter, "_enabled", True)
    plotter.start()  # as zoo-train does: the picture would be the helper's
    try:
        train(compose_config("train", ["trainer.steps=0"]), tmp_path)
    finally:
        plotter.finish()
    assert (tmp_path / "model").is_dir() and (tmp_path / "metrics.jsonl").read_text() == ""
    assert not (tmp_path / "loss.png").exists()
    assert "loss curves" not in caplog.text


def test_zoo_train_starts_the_helper_only_for_a_valid_run_that_draws(tmp_path, monkeypatch):
    from zoo.app import plot_helper as plotter

    started = []
    monkeypatch.setattr(plotter, "_enabled", True)  # as zoo-train does
    monkeypatch.setattr(plotter, "start", lambda: started.append(True))
    quiet, _ = train_app_in_process(tmp_path / "quiet", "trainer.steps=0", "trainer.plots=false")
    refused, err = train_app_in_process(tmp_path / "refused", "trainer.steps=-1")
    assert (quiet, refused, started) == (0, 2, []), err
    drawing, _ = train_app_in_process(tmp_path / "drawing", "trainer.steps=0")
    assert (drawing, started) == (0, [True])
