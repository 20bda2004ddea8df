"""Configs: the command-line contract, instantiate, schema rejection and value checks."""

import numpy as np
import pytest
import seed_reference as ref
from conftest import compose_config
from flax import nnx
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from zoo.config import validate
from zoo.errors import ZooError
from zoo.models.deep_nested import OuterModule

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


def test_a_config_composed_with_hydras_own_node_is_trained_and_the_node_ignored(tmp_path):
    """As lightning-hydra-template's tests compose (`return_hydra_config=True`, to set
    HydraConfig): zoo.config.validate and zoo.train leave the `hydra` node alone."""
    from conftest import CONFIGS
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import zoo

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["debug=fast", "seed=3"], return_hydra_config=True)
    assert "hydra" in cfg and cfg.hydra.job.name == "train"
    validate(cfg)
    last = zoo.train(cfg, run_dir=tmp_path)
    assert last["step"] == 4
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert "hydra" not in saved and saved.seed == 3  # the run's config only
    assert "hydra" in cfg  # the caller's config is left as it was
    with pytest.raises(ZooError, match="unknown key hydras"):  # a look-alike is still unknown
        validate(compose_config("train", ["+hydras=1"]))
