"""Third-party components through the entry points (`zoo.models`, `zoo.data`, `zoo.optimizers`,
`zoo.loggers`), found with no import by the user.

Each test installs small distributions (a module plus its .dist-info) on a fresh sys.path entry,
which importlib.metadata discovers as it would a pip-installed package, and loads the registry
afresh. tests/e2e/test_outside_project.py does the same with a real package pip-installed into
a venv."""

from __future__ import annotations

import sys
import textwrap
import warnings

import jax
import pytest
from conftest import compose_config
from flax import nnx

import zoo
from zoo.config.store import register_configs
from zoo.errors import ZooError
from zoo.models.deep_nested.modeling import OuterModule

MODEL = """
from flax import nnx
import zoo

@zoo.register_model({name!r})
class Model(nnx.Module):
    def __init__(self, width: int = 2, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)
"""


@pytest.fixture
def install(tmp_path, monkeypatch, fresh_registry):
    """install(package, module, source, entry_point_value, group): a distribution on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules = []

    def install(
        package: str, module: str, source: str, value: str | None = None, group: str = "zoo.models"
    ) -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{package.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{package} = {value or module}\n")
        modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def test_an_installed_plugin_adds_models_with_no_import_by_the_user(install):
    install("zoo-ext-tiny", "zoo_ext_tiny", MODEL.format(name="ext_tiny"))
    assert "zoo_ext_tiny" not in sys.modules
    assert zoo.list_models("ext_*") == ["ext_tiny"]
    assert "deep_nested" in zoo.list_models()
    model = zoo.create_model("ext_tiny", width=3, rngs=nnx.Rngs(0))
    assert model.linear.kernel.shape == (3, 1)
    assert zoo.model_spec(model) == ("ext_tiny", {"width": 3})


def test_an_entry_point_may_name_a_function_that_registers_or_a_registered_class(install):
    source = "def register():\n    import zoo\n" + textwrap.indent(
        MODEL.format(name="ext_by_function"), "    "
    )
    install("zoo-ext-fn", "zoo_ext_fn", source, "zoo_ext_fn:register")
    install("zoo-ext-cls", "zoo_ext_cls", MODEL.format(name="ext_by_class"), "zoo_ext_cls:Model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the class is registered by its import, never called
        assert zoo.list_models("ext_*") == ["ext_by_class", "ext_by_function"]


def test_a_broken_plugin_warns_naming_its_package_and_the_others_still_load(install):
    install("zoo-ext-good", "zoo_ext_good", MODEL.format(name="ext_good"))
    install("zoo-ext-missing", "zoo_ext_missing", "import a_module_that_is_not_installed\n")
    install(  # registers one model, then fails: none of its models stay
        "zoo-ext-half",
        "zoo_ext_half",
        MODEL.format(name="ext_half") + "raise RuntimeError('plugin bug')\n",
    )
    install("zoo-ext-clash", "zoo_ext_clash", MODEL.format(name="deep_nested"))
    with pytest.warns(RuntimeWarning) as warned:
        names = zoo.list_models()
    messages = sorted(str(w.message) for w in warned)
    assert len(messages) == 3
    assert "'zoo-ext-clash'" in messages[0] and "already registered" in messages[0]
    assert "'zoo-ext-half'" in messages[1] and "RuntimeError: plugin bug" in messages[1]
    assert "'zoo-ext-missing'" in messages[2] and "a_module_that_is_not_installed" in messages[2]
    assert "ext_good" in names and "ext_half" not in names
    assert zoo.get_model_class("deep_nested") is OuterModule


def test_entry_points_are_loaded_once(install):
    install("zoo-ext-once", "zoo_ext_once", "import zoo\nzoo.list_models()\nCOUNT = 1\n")
    zoo.list_models()
    module = sys.modules["zoo_ext_once"]
    module.COUNT += 1
    zoo.list_models()
    zoo.get_model_class("deep_nested")
    assert sys.modules["zoo_ext_once"].COUNT == 2


DATA_AND_OPTIMIZER = """
from dataclasses import dataclass
import optax
import zoo
from zoo.optim.settings import OptimizerSettings


def constant(cfg, model_cfg):
    raise AssertionError("built only when a run asks for it")


@zoo.declare("data", "ext_constant", builder=constant)
@dataclass(frozen=True)
class ConstantSettings:
    rows: int = zoo.setting(8, "how many", ge=1)


@zoo.declare("optim", "ext_sign", builder="zoo_ext_parts:signed")
@dataclass(frozen=True, kw_only=True)
class SignSettings(OptimizerSettings):
    lr: float = zoo.setting(1e-3, "step", gt=0)


def signed(cfg, learning_rate):
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))
"""


def test_a_package_adds_data_sets_and_optimizers_through_their_groups(install):
    from zoo.config import registry
    from zoo.config.validate import validate
    from zoo.optim.optimizers import make_optimizer

    install("zoo-ext-parts", "zoo_ext_parts", DATA_AND_OPTIMIZER, group="zoo.data")
    install("zoo-ext-parts2", "zoo_ext_parts2", "import zoo_ext_parts\n", group="zoo.optimizers")
    assert "ext_constant" in registry.names("data") and "ext_sign" in registry.names("optim")
    assert [s.name for s in registry.settings("data", "ext_constant")] == ["rows"]
    register_configs()
    cfg = compose_config("train", ["data=ext_constant", "optim=ext_sign", "optim.lr=0.5"])
    validate(cfg, "train")  # its keys and values are checked as the zoo's own
    assert cfg.data.rows == 8 and cfg.optim.schedule == "constant"
    tx = make_optimizer(cfg).tx
    update, _ = tx.update({"w": jax.numpy.array([-3.0, 2.0])}, tx.init({"w": jax.numpy.zeros(2)}))
    assert update["w"].tolist() == [0.5, -0.5]  # sign, times the learning rate, as a descent step
    bad = compose_config("train", ["data=ext_constant", "data.rows=0"])
    with pytest.raises(ZooError, match=r"^data.rows=0 is invalid: must be an integer >= 1"):
        validate(bad, "train")


def test_a_broken_data_plugin_warns_naming_its_group(install):
    install(
        "zoo-ext-broken-data", "zoo_ext_broken_data", "raise ImportError('no')\n", group="zoo.data"
    )
    with pytest.warns(RuntimeWarning, match="skipped data sets from package 'zoo-ext-broken-data'"):
        from zoo.config import registry

        registry.names("data")
