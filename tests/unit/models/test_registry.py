"""The timm-like registry: listing with wildcards, creation, unknown names, recorded specs."""

from __future__ import annotations

import pytest
from flax import nnx

import zoo
from zoo.errors import ZooError
from zoo.models.deep_nested.modeling import OuterModule


def test_list_models_includes_deep_nested_and_filters_with_wildcards():
    assert "deep_nested" in zoo.list_models()
    assert zoo.list_models("deep*") == ["deep_nested"]
    assert zoo.list_models("*nest?d") == ["deep_nested"]
    assert zoo.list_models("nothing*") == []


def test_list_models_takes_lists_of_patterns_and_exclusions_as_timm_does():
    # timm: list_models(filter='', ..., exclude_filters='') with a pattern or a list for each
    assert zoo.list_models(["deep*", "*former", "nothing*"]) == ["deep_nested", "transformer"]
    assert zoo.list_models(filter="*", exclude_filters="*former") == [
        n for n in zoo.list_models() if not n.endswith("former")
    ]
    kept = zoo.list_models(["deep*", "mlp", "transformer"], exclude_filters=["m*", "t*"])
    assert kept == ["deep_nested"]
    assert zoo.list_models("", exclude_filters=()) == zoo.list_models()  # empty: every name


def test_create_model_builds_the_registered_class_with_kwargs():
    model = zoo.create_model("deep_nested", in_features=3, hidden=5, depth=2, rngs=nnx.Rngs(0))
    assert isinstance(model, OuterModule)
    assert model.middle.inner.kernel.shape == (3, 5)
    assert zoo.model_spec(model) == (
        "deep_nested",
        {
            "in_features": 3,
            "hidden": 5,
            "depth": 2,
            "activation": "relu",
            "out_features": None,
            "dtype": "float32",
            "param_dtype": "float32",
        },
    )


def test_model_built_directly_knows_its_name_and_arguments():
    model = OuterModule(4, 8, activation="gelu", rngs=nnx.Rngs(1))
    name, kwargs = zoo.model_spec(model)
    assert name == "deep_nested"
    assert kwargs["activation"] == "gelu" and kwargs["in_features"] == 4


def test_unknown_name_is_named_with_close_matches():
    with pytest.raises(ZooError, match=r"'deep_nestd'.*did you mean 'deep_nested'"):
        zoo.create_model("deep_nestd", rngs=nnx.Rngs(0))
    with pytest.raises(KeyError):
        zoo.get_model_class("resnet9000")


def test_register_model_adds_a_user_model(fresh_registry):
    @zoo.register_model("test_tiny_linear")
    class Tiny(nnx.Module):
        def __init__(self, width: int, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(width, 1, rngs=rngs)

        def __call__(self, x):
            return self.linear(x)

    assert "test_tiny_linear" in zoo.list_models("test_*")
    model = zoo.create_model("test_tiny_linear", width=3, rngs=nnx.Rngs(0))
    assert zoo.model_spec(model) == ("test_tiny_linear", {"width": 3})
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("test_tiny_linear")(OuterModule)
