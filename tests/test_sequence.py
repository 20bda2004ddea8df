"""data=sequence: the token task, the model following the data, and the Transformer learning it."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import compose_config, run_script
from omegaconf import OmegaConf

from zoo.build import fit_to_data, model_kwargs
from zoo.config import validate
from zoo.data import make_dataset
from zoo.errors import ZooError
from zoo.losses import loss_and_metrics
from zoo.training import train


def sequence_data(*overrides):
    cfg = compose_config("train", ["model=transformer", "data=sequence", *overrides])
    validate(cfg)
    return cfg, make_dataset(cfg.data, cfg.model)


@pytest.mark.parametrize("rule", ["reverse", "sort"])
def test_sequence_targets_follow_the_rule_and_the_seed(rule):
    cfg, data = sequence_data(f"data.rule={rule}", "data.n_train=64", "data.n_val=16")
    x, y, x_val, y_val = map(np.asarray, data.arrays())
    assert x.shape == y.shape == (64, 12) and x_val.shape == (16, 12)
    assert x.dtype.kind == "i" and x.min() >= 0 and x.max() < 16 and len(np.unique(x)) == 16
    expected = x[:, ::-1] if rule == "reverse" else np.sort(x, axis=-1)
    np.testing.assert_array_equal(y, expected)
    assert data.task == "classification" and data.num_classes == 16
    assert data.model_inputs() == {"vocab_size": 16, "max_len": 12}
    again = make_dataset(cfg.data, cfg.model)
    np.testing.assert_array_equal(again.x_train, x)
    other = make_dataset(OmegaConf.merge(cfg.data, {"seed": 7}), cfg.model)
    assert not np.array_equal(other.x_train, x)


def test_token_loss_and_accuracy_average_over_every_position():
    logits = jax.random.normal(jax.random.key(0), (5, 7, 11))
    labels = jax.random.randint(jax.random.key(1), (5, 7), 0, 11)
    loss, metrics = loss_and_metrics("classification", logits, labels)
    log_p = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(log_p, labels[..., None], axis=-1)
    np.testing.assert_allclose(loss, -picked.mean(), rtol=1e-6)
    np_logits, np_labels = np.asarray(logits), np.asarray(labels)
    hits = [int(np.argmax(np_logits[i, t]) == np_labels[i, t]) for i in range(5) for t in range(7)]
    np.testing.assert_allclose(metrics["accuracy"], np.mean(hits))
    np.testing.assert_allclose(loss, optax.softmax_cross_entropy_with_integer_labels(
        logits.reshape(35, 11), labels.reshape(35)).mean(), rtol=1e-6)  # fmt: skip


def test_transformer_vocab_length_and_head_follow_the_data():
    cfg, data = sequence_data("data.vocab_size=9", "data.length=5", "model.vocab_size=30")
    _, kwargs = model_kwargs(cfg.model)
    fitted = fit_to_data(kwargs, data)
    followed = ("vocab_size", "max_len", "out_features")
    assert {k: fitted[k] for k in followed} == {"vocab_size": 9, "max_len": 5, "out_features": 9}
    assert all(fitted[k] == kwargs[k] for k in kwargs if k not in followed)


def test_a_feature_model_on_token_data_is_refused_by_key():
    cfg = compose_config("train", ["model=mlp", "data=sequence"])
    _, kwargs = model_kwargs(cfg.model)
    data = make_dataset(cfg.data, cfg.model)
    with pytest.raises(ZooError, match="model keys vocab_size, max_len, but the model has none"):
        fit_to_data(kwargs, data)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.rule=rotate"], "data.rule='rotate' is invalid: must be one of reverse, sort"),
        (["data.vocab_size=1"], "data.vocab_size=1 is invalid"),
        (["model.num_heads=0"], "model.num_heads=0 is invalid"),
        (["data=teacher"], "data.in_features cannot be resolved"),
    ],
)
def test_bad_sequence_configs_are_one_clear_error(overrides, message):
    cfg = compose_config("train", ["model=transformer", "data=sequence", *overrides])
    with pytest.raises(ZooError, match=message):
        validate(cfg)


@pytest.mark.slow
def test_model_transformer_with_the_default_data_exits_with_one_line(tmp_path):
    result = run_script("train.py", "model=transformer", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.in_features cannot be resolved: "
        "Interpolation key 'model.in_features' not found "
        "(this data follows the model's settings: choose data the model takes)"
    ]


@pytest.mark.slow
def test_transformer_learns_to_reverse_sequences_to_99_percent_token_accuracy(tmp_path):
    cfg, _ = sequence_data(
        "model.d_model=32", "model.num_heads=2", "model.num_layers=1", "model.dropout=0.1",
        "data.length=8", "data.n_train=2048", "data.n_val=512",
        "trainer.steps=300", "trainer.batch_size=64", "trainer.eval_every=300",
    )  # fmt: skip
    record = train(cfg, tmp_path)
    assert record["val_accuracy"] >= 0.99
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [100, 200, 300] and "val_accuracy" in lines[-1]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model"] == "transformer"
    assert (config["kwargs"]["vocab_size"], config["kwargs"]["max_len"]) == (16, 8)


@pytest.mark.slow
def test_a_transformer_with_dropout_resumes_bitwise_like_an_uninterrupted_run(tmp_path):
    """Dropout's per-layer RNG streams live in the checkpointed state, so a resumed run draws
    the same masks an uninterrupted one does."""
    run = [
        "model=transformer", "data=sequence", "model.d_model=16", "model.num_heads=2",
        "model.dropout=0.2", "data.length=6", "data.n_train=256", "data.n_val=64",
        "trainer.batch_size=32", "trainer.log_every=5", "trainer.eval_every=10",
        "trainer.ckpt_every=10",
    ]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(compose_config("train", [*run, "trainer.steps=20"]), whole)
    train(compose_config("train", [*run, "trainer.steps=10"]), parts)
    train(compose_config("train", [*run, "trainer.steps=20", "trainer.resume=true"]), parts)
    assert (parts / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    assert (parts / "model" / "model.safetensors").read_bytes() == (
        whole / "model" / "model.safetensors"
    ).read_bytes()
