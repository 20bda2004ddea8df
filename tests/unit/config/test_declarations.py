"""Settings declared once: defaults, checks, options and `--help` derived from one declaration;
settings from a signature; mapping, union and keyword settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import jax
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from omegaconf import OmegaConf

import zoo
from zoo.config import checks, fields, registry, schema, types
from zoo.config.fields import setting
from zoo.config.registry import declare
from zoo.config.store import register_configs
from zoo.config.types import SettingError
from zoo.config.validate import validate
from zoo.errors import ZooError
from zoo.training.build import build_model, model_kwargs


def params(model: nnx.Module) -> dict[str, np.ndarray]:
    return {
        "/".join(map(str, path)): np.asarray(v[...])
        for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


DATA_FOR = {
    "transformer": ["data=sequence"],
    "gpt2": ["data=sequence"],
    "llama": ["data=sequence"],
    "resnet": ["data=digits"],
    "vit": ["data=digits"],
}  # the default data=teacher has feature vectors


HEAVY = {"gpt2", "llama", "resnet", "vit"}  # seconds each to build and compare: make test only


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in zoo.list_models()],
)
def test_create_model_by_name_alone_is_the_model_train_builds(name):
    cfg = compose_config("train", [f"model={name}", *DATA_FOR.get(name, [])])
    validate(cfg)
    config_name, kwargs = model_kwargs(cfg.model)
    assert config_name == name
    ours = zoo.create_model(name, rngs=nnx.Rngs(0))
    built = build_model(name, kwargs, 0)
    assert zoo.model_spec(ours)[1] == zoo.model_spec(built)[1]
    theirs = params(built)
    mine = params(ours)
    assert mine.keys() == theirs.keys()
    for path in mine:
        np.testing.assert_array_equal(mine[path], theirs[path], err_msg=path)


def test_one_declaration_gives_defaults_checks_and_the_option():
    cfg = compose_config("train", ["optim=sgd"])
    assert cfg.optim.momentum == 0.9  # one default, wherever it is read
    assert zoo.model_spec(zoo.create_model("mlp", rngs=nnx.Rngs(0)))[1]["out_features"] == 1
    with pytest.raises(SettingError, match=r"model\.depth=0 is invalid: must be an integer >= 1"):
        zoo.create_model("deep_nested", depth=0, rngs=nnx.Rngs(0))
    from zoo.models.deep_nested.modeling import OuterModule

    with pytest.raises(SettingError, match=r"model\.depth=True is invalid"):  # the constructor too
        OuterModule(4, 8, depth=True, rngs=nnx.Rngs(0))
    with pytest.raises(SettingError, match=r"has no setting 'hiden'; did you mean 'hidden'"):
        zoo.create_model("deep_nested", hiden=3, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.bogus=1", "unknown key trainer.bogus"),
        ("+trainer.step=100", "unknown key trainer.step; did you mean trainer.steps?"),
        ("+optim.bogus=1", "unknown key optim.bogus"),
        ("++model.depht=2", "unknown key model.depht; did you mean model.depth?"),
        ("+foo=1", "unknown key foo (valid keys: seed, model"),
        ("optim.name=sgd", "use optim=sgd (not optim.name=sgd)"),
        ("data.name=npz", "use data=npz (not data.name=npz)"),
        ("model=transformer", "data.in_features cannot be resolved"),
        (
            "model.out_features=0",
            "model.out_features=0 is invalid: must be null or an integer >= 1",
        ),
        ("model=mlp model.widths=[]", "model.widths=[] is invalid: must be a list of 1 to 1000"),
        ("data=csv", "data.path is required"),
        ("model.depth=100000000", "model.depth=100000000 is invalid"),
        ("trainer.steps=100000000000000", "trainer.steps=100000000000000 is invalid"),
        ("model=transformer data=sequence model.num_heads=3", "divisible by model.num_heads=3"),
    ],
)
def test_unknown_keys_and_bad_values_are_one_named_error(override, message):
    cfg = compose_config("train", override.split())
    with pytest.raises(ZooError) as err:
        validate(cfg)
    assert message in str(err.value)
    if message.startswith("unknown"):
        assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_a_model_without_a_declaration_gets_its_settings_from_its_signature(fresh_registry):
    @zoo.register_model("sig_model")
    class SigModel(nnx.Module):
        def __init__(
            self,
            hidden: int,
            in_features: int = 4,
            scale: float = 1.0,
            act: Literal["relu", "tanh"] = "relu",
            widths: list[int] | None = None,
            bias: bool = True,
            *,
            rngs: nnx.Rngs,
        ):
            self.linear = nnx.Linear(in_features, hidden, use_bias=bias, rngs=rngs)
            self.scale, self.act = scale, act

        def __call__(self, x):
            return self.scale * getattr(jax.nn, self.act)(self.linear(x))

    register_configs()
    settings = {s.name: s for s in zoo.model_settings("sig_model")}
    assert settings["hidden"].required and settings["act"].default == "relu"
    cfg = compose_config("train", ["model=sig_model", "model.hidden=3", "model.act=tanh"])
    validate(cfg)
    model = zoo.create_model("sig_model", hidden=3, act="tanh", rngs=nnx.Rngs(0))
    assert model(np.ones((2, 4), np.float32)).shape == (2, 3)
    with pytest.raises(ZooError, match=r"^model\.hidden is required"):
        validate(compose_config("train", ["model=sig_model"]))
    with pytest.raises(ZooError, match=r"model\.act='gelu' is invalid: must be one of relu, tanh"):
        validate(compose_config("train", ["model=sig_model", "model.hidden=3", "model.act=gelu"]))


def test_a_constructor_argument_no_config_can_express_is_named(fresh_registry):
    @zoo.register_model("odd_model")
    class OddModel(nnx.Module):
        def __init__(self, table: dict[int, str], *, rngs: nnx.Rngs):
            self.table = table

    with pytest.raises(ZooError, match=r"model 'odd_model' cannot be configured: .*'table'"):
        zoo.model_settings("odd_model")
    assert "odd_model" not in registry.configurable("model")


def test_a_declaration_that_disagrees_with_its_constructor_is_refused_at_registration(
    fresh_registry,
):
    @declare("model", "disagreeing")
    @dataclass(frozen=True)
    class DisagreeingSettings:
        width: int = setting(3, "a width", ge=1)

    with pytest.raises(TypeError, match=r"Disagreeing\(width=2\) disagrees with its declaration"):

        @zoo.register_model("disagreeing")
        class Disagreeing(nnx.Module):
            def __init__(self, width: int = 2, *, rngs: nnx.Rngs):
                pass


@registry.declare("test_finetune", "mapping")
@dataclass(frozen=True)
class MappingSettings:
    from_: str | None = fields.setting(None, "a keyword as a setting name")
    factors: dict[str, float] = fields.setting({}, "pattern -> factor", gt=0, max_items=2)
    pairs: dict[str, str] | list[tuple[str, str]] | None = fields.setting(None, "either form")

    def __post_init__(self) -> None:
        if self.from_ == "nowhere":
            raise types.SettingError("from=nowhere is refused by the declaration")


def test_mapping_union_and_keyword_settings_are_declared_checked_and_shown():
    settings = {s.name: s for s in fields.settings_of(MappingSettings)}
    assert list(settings) == ["from", "factors", "pairs"]
    node = OmegaConf.structured(schema.schema("test_finetune", "mapping", list(settings.values())))
    assert OmegaConf.to_container(node) == {"from": None, "factors": {}, "pairs": None}
    OmegaConf.set_struct(node, True)
    node.factors.merge_with({"head": 2})  # a command-line mapping adds keys to the default one
    assert node.factors == {"head": 2.0}

    check = lambda values: checks.check_values(  # noqa: E731
        list(settings.values()), values, "x", MappingSettings
    )
    check({"from": "a", "factors": {"a": 1, "b": 0.5}, "pairs": [["^a", "b"]]})
    check({"pairs": {"^a": "b"}})
    for values, message in [
        ({"factors": {"a": 0}}, "x.factors={'a': 0} is invalid: must be a mapping of at most 2 "),
        ({"factors": {"a": 1, "b": 1, "c": 1}}, "must be a mapping of at most 2 entries, each to"),
        ({"factors": [1]}, "x.factors=[1] is invalid"),
        ({"pairs": [["a", "b", "c"]]}, "each [a string, a string]"),
        ({"pairs": {"a": 1}}, "must be null or a mapping of at most 4096 entries, each to a str"),
        ({"from": "nowhere"}, "from=nowhere is refused by the declaration"),
    ]:
        with pytest.raises(types.SettingError, match=re.escape(message)):
            check(values)
    assert checks.as_text({"head": 2.0, "**/bias": 0.5}) == "{head:2.0,**/bias:0.5}"
