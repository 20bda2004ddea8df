"""data=sequence: the token task, the model following the data, and the Transformer learning it."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from conftest import compose_config
from helpers import ref_cross_entropy, sequence_data
from omegaconf import OmegaConf

from zoo.config.validate import validate
from zoo.data.dataset import make_dataset
from zoo.errors import ZooError
from zoo.training.build import fit_to_data, model_kwargs
from zoo.training.steps import loss_and_metrics


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
    # host inputs, a host reference and one jitted call each: eager jax ops (random draws,
    # log_softmax, ...) compile a program apiece, seconds in all on a cold cache
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7, 11)).astype(np.float32)
    labels = rng.integers(0, 11, (5, 7)).astype(np.int32)
    loss, metrics = jax.jit(loss_and_metrics, static_argnums=0)("classification", logits, labels)
    np.testing.assert_allclose(loss, ref_cross_entropy(logits, labels), rtol=1e-6)
    hits = [int(np.argmax(logits[i, t]) == labels[i, t]) for i in range(5) for t in range(7)]
    np.testing.assert_allclose(metrics["accuracy"], np.mean(hits))
    per_token = jax.jit(optax.softmax_cross_entropy_with_integer_labels)(
        logits.reshape(35, 11), labels.reshape(35)
    )
    np.testing.assert_allclose(loss, np.asarray(per_token).mean(), rtol=1e-6)


def test_transformer_vocab_length_and_head_follow_the_data():
    cfg, data = sequence_data("data.vocab_size=9", "data.length=5", "model.vocab_size=30")
    name, kwargs = model_kwargs(cfg.model)
    fitted = fit_to_data(name, kwargs, data)
    followed = ("vocab_size", "max_len", "out_features")
    assert {k: fitted[k] for k in followed} == {"vocab_size": 9, "max_len": 5, "out_features": 9}
    assert all(fitted[k] == kwargs[k] for k in kwargs if k not in followed)


def test_a_feature_model_on_token_data_is_refused_by_key():
    cfg = compose_config("train", ["model=mlp", "data=sequence"])
    name, kwargs = model_kwargs(cfg.model)
    data = make_dataset(cfg.data, cfg.model)
    with pytest.raises(ZooError, match="model keys vocab_size, max_len, but the model has none"):
        fit_to_data(name, kwargs, data)


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
