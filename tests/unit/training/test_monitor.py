"""The best model and early stopping (trainer.monitor, trainer.patience), and the learning rate
logged at each record."""

from __future__ import annotations

import json
import logging
import logging.handlers
import shutil
from pathlib import Path

import numpy as np
import optax
import pytest
from conftest import compose_config

import zoo
from zoo.data.dataset import make_dataset
from zoo.training.monitor import Monitor
from zoo.training.run import train
from zoo.training.steps import loss_and_metrics


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# 16 noisy training rows and a wide model: the validation loss is best around step 40, then rises
OVERFITTING = [
    "data.n_train=16",
    "data.n_val=64",
    "data.noise=1.0",
    "model.hidden=128",
    "trainer.batch_size=16",
    "trainer.steps=300",
    "trainer.log_every=10",
    "trainer.eval_every=10",
    "trainer.ckpt_every=100",
    "trainer.patience=3",
    "trainer.ema=0.5",
    "optim.lr=0.03",
    "optim.schedule=cosine",
    "optim.warmup_steps=10",
    "optim.final_lr_fraction=0.1",
]


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = pytest.mark.xdist_group("monitor")


@pytest.fixture(scope="module")
def plateaued(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """OVERFITTING trained until patience stops it: (run dir, train()'s result, log lines)."""
    run_dir = tmp_path_factory.mktemp("plateaued")
    handler = logging.handlers.BufferingHandler(10_000)
    logging.getLogger("zoo").addHandler(handler)
    level = logging.getLogger("zoo").level
    logging.getLogger("zoo").setLevel(logging.INFO)
    try:
        result = train(compose_config("train", OVERFITTING), run_dir)
    finally:
        logging.getLogger("zoo").removeHandler(handler)
        logging.getLogger("zoo").setLevel(level)
    return run_dir, result, [r.getMessage() for r in handler.buffer]


def test_logged_lr_is_optax_warmup_cosine_at_the_last_step_before_each_record(plateaued):
    run_dir, _, _ = plateaued
    want = optax.warmup_cosine_decay_schedule(0.0, 0.03, 10, 300, end_value=0.003)
    logged = [(r["step"], r["lr"]) for r in records(run_dir)]
    assert [s for s, _ in logged] == list(range(10, logged[-1][0] + 1, 10))
    # float32, computed on the device inside the fused chunk: equal up to its rounding
    assert [lr for _, lr in logged] == pytest.approx([float(want(s - 1)) for s, _ in logged], 1e-6)
    assert logged[0][1] == pytest.approx(0.03 * 9 / 10)  # step 10 ran at count 9, warming up
    # step 70 ran at count 69, 59 of the 290 steps into the decay from 0.03 to 0.003
    step, lr = logged[6]
    assert step == 70 and lr == pytest.approx(0.003 + 0.027 * (1 + np.cos(np.pi * 59 / 290)) / 2)


def validation_losses(*model_dirs: Path) -> list[float]:
    """The validation loss of each saved model, on OVERFITTING's data."""
    cfg = compose_config("train", OVERFITTING)
    data = make_dataset(cfg.data, cfg.model)
    return [
        float(loss_and_metrics(data.task, zoo.from_pretrained(d)(data.x_val), data.y_val)[0])
        for d in model_dirs
    ]


def test_patience_stops_a_plateaued_run_and_best_holds_the_best_evaluation(plateaued):
    run_dir, result, log_lines = plateaued
    logged = records(run_dir)
    losses = [r["val_loss"] for r in logged]
    best, stop = min(losses), logged[-1]["step"]
    assert stop < 300 and losses.index(best) == len(losses) - 4  # then 3 without improvement
    assert any(
        line.startswith(f"early stopping at step {stop}: val_loss has not improved for 3 ")
        for line in log_lines
    )
    assert result["optimized_metric"] == best and result["step"] == stop
    # the run still ended normally: its final checkpoint, model/ and loss.png
    assert (run_dir / "checkpoints" / str(stop)).is_dir() and (run_dir / "loss.png").is_file()
    # best/ and model/ hold the weights validated (the EMA) at the best and at the last evaluation
    assert validation_losses(run_dir / "best", run_dir / "model") == pytest.approx(
        [best, losses[-1]], rel=1e-6
    )


def test_resuming_a_run_that_stopped_early_trains_no_further_and_knows_its_best(
    plateaued, tmp_path
):
    run_dir = Path(shutil.copytree(plateaued[0], tmp_path / "run"))
    again = train(compose_config("train", [*OVERFITTING, "trainer.resume=true"]), run_dir)
    assert records(run_dir) == records(plateaued[0])
    assert again["optimized_metric"] == plateaued[1]["optimized_metric"]


def test_the_monitor_keeps_the_best_either_way_and_counts_evaluations_without_progress():
    monitor = Monitor("val_accuracy", "max", patience=2)
    seen = [monitor.update({"step": s, "val_accuracy": v}, True) for s, v in [(1, 0.5), (2, 0.7)]]
    assert seen == [True, True] and (monitor.best, monitor.best_step) == (0.7, 2)
    assert not monitor.update({"step": 3, "train_loss": 9.0}, False)  # no evaluation: no count
    assert not monitor.update({"step": 4, "val_accuracy": 0.7}, True)  # equal is no progress
    assert not monitor.exhausted
    assert not monitor.update({"step": 5, "val_accuracy": 0.6}, True) and monitor.exhausted
    resumed = Monitor("val_accuracy", "max", patience=2)
    resumed.restore(json.loads(json.dumps(monitor.state())))  # as a checkpoint's meta holds it
    assert resumed.state() == monitor.state() and resumed.exhausted
    other = Monitor("val_loss", "min", patience=2)
    other.restore(monitor.state())  # another metric: tracked afresh
    assert other.best is None and other.optimized_metric != other.optimized_metric  # NaN
