"""Runs long enough to learn: the digits, reversing sequences, and bit-identical repeats."""

from __future__ import annotations

import json

from conftest import compose_config
from helpers import read_metrics, sequence_data

from zoo.data.dataset import make_dataset
from zoo.training.run import train


def test_transformer_learns_to_reverse_sequences_to_99_percent_token_accuracy(tmp_path):
    # it is at 99.9% after 25 steps and at 100% from step 50 on
    cfg, _ = sequence_data(
        "model.d_model=32", "model.num_heads=2", "model.num_layers=1", "model.dropout=0.1",
        "data.length=8", "data.n_train=2048", "data.n_val=512", "trainer.steps=75",
        "trainer.log_every=25", "trainer.batch_size=64", "trainer.eval_every=75",
        "trainer.plots=false",  # loss.png is not what this checks (drawing it takes ~1 s)
    )  # fmt: skip
    record = train(cfg, tmp_path)
    assert record["val_accuracy"] >= 0.99
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [25, 50, 75] and "val_accuracy" in lines[-1]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model"] == "transformer"
    assert (config["kwargs"]["vocab_size"], config["kwargs"]["max_len"]) == (16, 8)


def test_same_config_and_seed_give_bit_identical_metrics(tmp_path):
    # loss.png is not what this compares (drawing it takes ~0.5 s a run)
    run = ["trainer.steps=300", "trainer.eval_every=100", "trainer.plots=false"]
    cfg = compose_config("train", run)
    for name in "ab":
        (tmp_path / name).mkdir()
        train(cfg, tmp_path / name)
    assert (tmp_path / "a/metrics.jsonl").read_bytes() == (
        tmp_path / "b/metrics.jsonl"
    ).read_bytes()
    other = compose_config("train", [*run, "seed=1"])
    (tmp_path / "c").mkdir()
    train(other, tmp_path / "c")
    assert read_metrics(tmp_path / "c") != read_metrics(tmp_path / "a")


def test_digits_default_config_reaches_95_percent_validation_accuracy(tmp_path):
    cfg = compose_config("train", ["data=digits"])
    data = make_dataset(cfg.data, cfg.model)
    assert (data.in_features, data.num_classes, data.task) == (64, 10, "classification")
    assert len(data.x_train) + len(data.x_val) == 1797
    record = train(cfg, tmp_path)
    assert record["val_accuracy"] >= 0.95
