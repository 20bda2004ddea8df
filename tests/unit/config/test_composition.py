"""Configs composed as train.py composes them: the defaults are the seed's, bad types, keys and
values are one line naming the key."""

from __future__ import annotations

import numpy as np
import pytest
import seed_reference as ref
from conftest import compose_config
from flax import nnx
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from zoo.config.validate import validate
from zoo.errors import ZooError
from zoo.models.deep_nested.modeling import OuterModule

CONTRACT_KEYS = [
    "seed",
    "model.in_features",
    "model.hidden",
    "model.depth",
    "model.activation",
    "model.out_features",
    "trainer.steps",
    "trainer.batch_size",
    "trainer.eval_every",
    "trainer.log_every",
    "optim.lr",
]


def test_default_config_is_the_seed_model_on_teacher_data_with_adam():
    cfg = compose_config()
    for key in CONTRACT_KEYS:
        assert key.split(".")[-1] in (cfg if "." not in key else cfg[key.split(".")[0]])
    assert (cfg.model.in_features, cfg.model.hidden, cfg.model.depth) == (4, 8, 1)
    assert cfg.model.activation == "relu" and cfg.model.out_features is None
    assert cfg.data.name == "teacher" and cfg.optim.name == "adam"


def test_instantiate_returns_the_seed_model():
    cfg = compose_config()
    model = instantiate(cfg.model, rngs=nnx.Rngs(cfg.seed))
    assert isinstance(model, OuterModule)
    oracle = ref.OuterModule(4, 8, rngs=nnx.Rngs(cfg.seed))
    np.testing.assert_array_equal(model.middle.inner.kernel[...], oracle.middle.inner.kernel[...])


@pytest.mark.parametrize("optim", ["adam", "adamw", "sgd"])
def test_optimizer_choices_compose_with_lr(optim):
    cfg = compose_config("train", [f"optim={optim}", "optim.lr=0.5"])
    assert cfg.optim.name == optim and cfg.optim.lr == 0.5


@pytest.mark.parametrize(
    "override",
    [
        "model.depth=abc",
        "model.depht=3",
        "trainer.batch_size=1.5",
        "optim.lr=fast",
        "optim=adagrad",
        "model=nope",
        "trainer.stepz=3",
    ],
)
def test_schema_rejects_bad_types_and_keys_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_config("train", [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=0", "model.depth=0"),
        ("model.hidden=-3", "model.hidden=-3"),
        ("model.in_features=0", "model.in_features=0"),
        ("model.out_features=0", "model.out_features=0"),
        ("model.activation=swish2", "model.activation='swish2'"),
        ("trainer.batch_size=0", "trainer.batch_size=0"),
        ("trainer.steps=-1", "trainer.steps=-1"),
        ("trainer.eval_every=0", "trainer.eval_every=0"),
        ("trainer.log_every=0", "trainer.log_every=0"),
        ("optim.lr=0", "optim.lr=0.0"),
        ("optim.lr=-0.1", "optim.lr=-0.1"),
        ("optim.lr=1e999", "optim.lr=inf"),
        ("seed=-1", "seed=-1"),
        ("data.n_train=0", "data.n_train=0"),
        ("data.noise=-1", "data.noise=-1.0"),
        ("model._target_=os.system", "model._target_='os.system'"),
    ],
)
def test_bad_values_are_named_with_their_key(override, message):
    cfg = compose_config("train", [override])
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(cfg)


def test_default_config_is_valid():
    validate(compose_config())
    validate(compose_config("eval"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.schedule=exponential"], "optim.schedule='exponential' is invalid: must be one of"),
        (["optim.final_lr_fraction=2"], "optim.final_lr_fraction=2.0 is invalid"),
        (
            ["optim.clip_norm=0"],
            "optim.clip_norm=0.0 is invalid: must be null or a finite number > 0",
        ),
        (["optim=adamw", "optim.weight_decay=-1"], "optim.weight_decay=-1.0 is invalid"),
        (["trainer.accumulate=0"], "trainer.accumulate=0 is invalid"),
        (["trainer.ema=1.0"], "trainer.ema=1.0 is invalid: must be null or a finite number > 0"),
        (["trainer.monitor_mode=best"], "trainer.monitor_mode='best' is invalid: must be one of"),
        (["trainer.patience=0"], "trainer.patience=0 is invalid"),
        (
            ["trainer.accumulate=4096", "trainer.batch_size=8192"],
            "trainer.accumulate \\* trainer.batch_size = 33554432 examples per update",
        ),
        (
            ["optim.schedule=cosine", "optim.warmup_steps=2000"],
            "optim.warmup_steps=2000 must be < trainer.steps=2000 with optim.schedule=cosine",
        ),
        (["optim.warmup_steps=3000"], "optim.warmup_steps=3000 is longer than trainer.steps=2000"),
    ],
)
def test_bad_recipe_values_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ZooError, match=message) as err:
        validate(compose_config("train", overrides))
    assert "\n" not in str(err.value)
