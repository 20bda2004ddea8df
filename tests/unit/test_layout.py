"""The package shows its design: few modules at zoo/'s top level, none long, every folder named in
the README's Layout, and the zoo's components found through the registry without importing JAX
for their options."""

from __future__ import annotations

import re

from conftest import ROOT

PACKAGE = ROOT / "zoo"
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 400


def test_few_modules_at_the_top_level_and_none_over_400_lines():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_the_readme_layout_names_every_folder_of_the_package():
    text = (ROOT / "README.md").read_text()
    layout = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^(zoo(?:/\w+)*)/\s", layout, re.MULTILINE))
    folders = {"zoo"} | {
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*")
        if p.is_dir() and p.name != "__pycache__" and "recipes/" not in str(p.relative_to(PACKAGE))
    }
    assert folders <= named, f"README.md's Layout does not name {sorted(folders - named)}"


def test_the_zoos_own_options_come_from_the_registry_without_their_builders():
    from zoo.config import registry

    assert {"deep_nested", "mlp", "transformer"} <= set(registry.names("model"))
    assert {"teacher", "npz", "csv", "digits", "sequence"} <= set(registry.names("data"))
    assert {"adam", "adamw", "sgd", "lion", "rmsprop", "adafactor"} <= set(registry.names("optim"))
    assert {"tensorboard", "csv", "mlflow", "wandb"} <= set(registry.names("logger"))
    for group in ("model", "data", "optim", "logger"):
        for name in registry.names(group):
            module = registry.declaration(group, name).__module__
            assert module.endswith("settings"), (group, name, module)  # the JAX-free declaration
