"""The layers hold: the import contracts catch an import of zoo.app from zoo.models (inside a
function too), and the config and the Hydra plugin load no JAX."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def test_an_import_of_the_apps_from_the_models_breaks_the_lint(tmp_path):
    for part in ("zoo", "hydra_plugins"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "zoo" / "models" / "layers.py", "a") as layers:
        layers.write("\n\ndef _app():\n    from zoo.app import cli\n\n    return cli\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [BIN / "lint-imports"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "zoo.models.layers -> zoo.app.cli" in result.stdout
    assert "Layers: the apps over training" in result.stdout and "BROKEN" in result.stdout


def test_the_config_and_the_hydra_plugin_load_no_jax():
    code = (
        "import sys, zoo.config, hydra_plugins.zoo_searchpath.zoo_searchpath\n"
        "from zoo.config.store import register_configs\n"
        "register_configs()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'jaxlib', 'flax', 'optax', 'orbax')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
