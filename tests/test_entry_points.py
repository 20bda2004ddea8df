"""Third-party models through the `zoo.models` entry points, found with no import by the user.

Each test installs small distributions (a module plus its .dist-info) on a fresh sys.path entry,
which importlib.metadata discovers as it would a pip-installed package, and loads the registry
afresh. tests/test_plugin.py does the same with a real package pip-installed into a venv.
"""

import sys
import textwrap
import warnings

import pytest
from flax import nnx

import zoo
from zoo import registry
from zoo.models.deep_nested import OuterModule

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
def install(tmp_path, monkeypatch):
    """install(package, module, source, entry_point_value): a distribution on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_tried", set())
    modules = []

    def install(package: str, module: str, source: str, value: str | None = None) -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{package.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[zoo.models]\n{package} = {value or module}\n")
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
