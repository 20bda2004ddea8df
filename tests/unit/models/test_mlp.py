"""The MLP: state paths, numerics, dropout, config, and training through the loop."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx

import zoo
from zoo.config.validate import validate
from zoo.errors import ZooError
from zoo.models.mlp.modeling import MLP
from zoo.training.run import train
from zoo.weights.pretrained import from_pretrained, save_pretrained


def test_state_paths_mirror_the_attributes():
    model = zoo.create_model("mlp", in_features=3, widths=[5, 7], out_features=2, rngs=nnx.Rngs(0))
    shapes = {"/".join(map(str, p)): v[...].shape for p, v in nnx.to_flat_state(nnx.state(model))}
    assert shapes == {
        "layers/0/kernel": (3, 5),
        "layers/0/bias": (5,),
        "layers/1/kernel": (5, 7),
        "layers/1/bias": (7,),
        "head/kernel": (7, 2),
        "head/bias": (2,),
    }
    assert zoo.list_models() == [
        "deep_nested", "gpt2", "llama", "mlp", "resnet", "transformer", "vit"
    ]  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_is_linear_activation_per_width_then_the_head(activation):
    model = MLP(3, [5, 7], activation=activation, out_features=2, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (4, 3))
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[activation]
    h = x
    for layer in model.layers:
        h = act(h @ layer.kernel[...] + layer.bias[...])
    np.testing.assert_allclose(model(x), h @ model.head.kernel[...] + model.head.bias[...], 1e-6)
    headless = MLP(3, [5, 7], activation=activation, out_features=None, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(headless(x), h, rtol=1e-6)  # same draws for the shared layers


def test_dropout_in_train_mode_only():
    model = MLP(3, [256], activation="identity", dropout=0.5, out_features=None, rngs=nnx.Rngs(2))
    x = jnp.ones((1, 3))
    model.eval()
    clean = model(x)
    model.train()
    noisy = model(x)
    zeroed = np.asarray(noisy == 0).mean()
    assert 0.3 < zeroed < 0.7  # about half the units dropped, the rest scaled by 2
    kept = np.asarray(noisy != 0)
    np.testing.assert_allclose(noisy[kept], 2 * clean[kept], rtol=1e-6)
    assert not np.array_equal(model(x), noisy)  # the stream advances


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widths": []}, "widths"),
        ({"widths": [4, 0]}, "widths"),
        ({"dropout": -0.1}, "dropout"),
        ({"activation": "swish"}, "model.activation='swish' is invalid: must be one of relu"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(3, **({"widths": [4]} | kwargs), rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.widths=[8,0]", "model.widths=[8, 0] is invalid"),
        ("model.dropout=1.5", "model.dropout=1.5 is invalid"),
    ],
)
def test_bad_config_values_are_reported_by_key(override, message):
    with pytest.raises(ZooError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(compose_config("train", ["model=mlp", override]))


def test_default_mlp_config_trains_on_the_teacher_and_saves_a_loadable_model(tmp_path):
    # trainer.plots=false: loss.png is not checked here, and drawing it costs ~0.5 s
    cfg = compose_config(
        "train", ["model=mlp", "trainer.steps=300", "trainer.eval_every=300", "trainer.plots=false"]
    )
    validate(cfg)
    record = train(cfg, tmp_path)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["val_loss"] < 0.1 * first["train_loss"]
    loaded = from_pretrained(tmp_path / "model")
    assert zoo.model_spec(loaded) == ("mlp", {
        "in_features": 4, "widths": (64, 64), "activation": "relu", "dropout": 0.0,
        "out_features": 1, "dtype": "float32", "param_dtype": "float32",
    })  # fmt: skip
    save_pretrained(loaded, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["kwargs"]["widths"] == [
        64,
        64,
    ]


def test_teacher_data_takes_the_mlp_output_width_and_refuses_a_model_without_one():
    from omegaconf import OmegaConf

    from zoo.data.dataset import make_dataset

    cfg = compose_config("train", ["model=mlp", "model.out_features=null", "model.widths=[5,3]"])
    assert make_dataset(cfg.data, cfg.model).y_train.shape == (2048, 3)
    headless = OmegaConf.create({"name": "custom", "in_features": 4})
    with pytest.raises(ZooError, match="cannot tell model 'custom''s output width"):
        make_dataset(cfg.data, headless)


def test_hydra_instantiate_builds_an_mlp_that_saves_and_loads(tmp_path):
    from hydra.utils import instantiate

    model = instantiate(compose_config("train", ["model=mlp"]).model, rngs=nnx.Rngs(0))
    assert isinstance(model, MLP) and zoo.model_spec(model)[1]["widths"] == (64, 64)
    save_pretrained(model, tmp_path / "m")  # widths arrive as a ListConfig: still JSON-plain
    x = jnp.ones((2, 4))
    np.testing.assert_array_equal(from_pretrained(tmp_path / "m")(x), model(x))
