"""One declaration per model, optimizer and dataset: the schema, the defaults, the checks and the
command line all come from it, for the zoo's models and for anyone else's."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import jax
import numpy as np
import pytest
from conftest import ROOT, compose_config, run_script
from flax import nnx

import zoo
from zoo import registry
from zoo.build import build_model, model_kwargs
from zoo.config import register_configs, validate
from zoo.declarations import SettingError, declare, setting
from zoo.errors import ZooError


def params(model: nnx.Module) -> dict[str, np.ndarray]:
    return {
        "/".join(map(str, path)): np.asarray(v[...])
        for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


DATA_FOR = {"transformer": ["data=sequence"]}  # the default data=teacher has feature vectors


@pytest.mark.parametrize("name", zoo.list_models())
def test_create_model_by_name_alone_is_the_model_train_builds(name):
    cfg = compose_config("train", [f"model={name}", *DATA_FOR.get(name, [])])
    validate(cfg)
    config_name, kwargs = model_kwargs(cfg.model)
    assert config_name == name
    ours = zoo.create_model(name, rngs=nnx.Rngs(0))
    assert zoo.model_spec(ours)[1] == zoo.model_spec(build_model(name, kwargs, 0))[1]
    theirs = params(build_model(name, kwargs, 0))
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
    from zoo.models.deep_nested import OuterModule

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


@pytest.mark.slow
def test_the_command_line_refuses_unknown_keys_with_one_line_and_no_traceback():
    for override, line in [
        ("+trainer.bogus=1", "error: unknown key trainer.bogus"),
        ("+optim.bogus=1", "error: unknown key optim.bogus"),
        ("+foo=1", "error: unknown key foo"),
        ("optim.name=sgd", "error: optim.name=sgd does not choose the optim"),
        ("data.name=npz", "error: data.name=npz does not choose the data"),
        ("trainer.stepz=3", "error: unknown key trainer.stepz; did you mean trainer.steps?"),
    ]:
        result = run_script("train.py", override, timeout=120)
        assert result.returncode == 2, (override, result.stderr)
        (printed,) = result.stderr.strip().splitlines()
        assert printed.startswith(line), printed
        assert "jax" not in result.stdout  # refused before any JAX work


@pytest.mark.slow
def test_help_lists_the_options_and_every_setting_but_no_schema():
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "zoo_" not in result.stdout
    assert "model: deep_nested, deep_nested_wide, mlp, transformer" in result.stdout
    assert "model.depth=1  number of blocks" in result.stdout
    assert "optim.lr=0.01  learning rate" in result.stdout


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_SETTINGS", dict(registry._SETTINGS))
    yield
    register_configs()  # drop nothing: the ConfigStore keeps the options it was given


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
    assert "odd_model" not in registry.configurable_models()


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


@pytest.mark.slow
def test_zoo_train_from_python_leaves_a_run_eval_py_reads(tmp_path):
    run_dir = tmp_path / "run"
    metrics = zoo.train(
        ["model=mlp", "model.widths=[8]", "trainer.steps=20", "trainer.eval_every=20"],
        run_dir=run_dir,
    )
    assert (run_dir / "config.yaml").is_file() and not (run_dir / ".hydra").exists()
    result = run_script("eval.py", f"run_dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"val_loss = {metrics['val_loss']:.6g}" in result.stdout
    with pytest.raises(ZooError, match="unknown key trainer.stepz; did you mean trainer.steps"):
        zoo.train(["trainer.stepz=3"], run_dir=tmp_path / "other")
