"""Shared test helpers: compose configs like train.py does, and run the entry points.

The tests mirror the package: tests/unit/<package>/ checks one package of zoo/ (core: the modules
at zoo/'s top level), in-process; tests/e2e/ holds what needs subprocesses, venvs, signals or long
runs, and every test there is marked `slow` here (make test-fast leaves them out). A few unit tests
that compile many programs (several seeds, both dtypes, every recipe) are marked `slow` where they
stand: `make test` runs them, the edit loop does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from zoo.app.compose_once import light_composition
from zoo.app.process import use_compilation_cache
from zoo.config.store import register_configs

# Before JAX is imported: in-process runs load the steps other tests (and the subprocesses, which
# the entry points point at the same cache) already compiled.
use_compilation_cache()
# The tests check behaviour and numbers, never speed: XLA's CPU backend compiles their many small
# programs without LLVM's optimisations in about half the time, and with its older elemental
# emitters instead of the fusion emitters (MLIR) in about 40% of that again. Subprocesses
# inherit it; users' runs and `make bench` keep XLA's defaults, and test_command_line checks
# the seed's numbers bitwise under them too (DEFAULT_XLA).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
DEFAULT_XLA = {"XLA_FLAGS": ""}

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
E2E = Path(__file__).resolve().parent / "e2e"

register_configs()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` by folder: every test under tests/e2e/."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)


def compose_config(name: str = "train", overrides: list[str] | None = None):
    """The config `python <name>.py <overrides>` would see (composed as zoo.compose does)."""
    with light_composition(), initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [])


def run_script(
    script: str,
    *overrides: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
):
    """Run `python <script> <overrides>` from the repo as a user would; return the result."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | (env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fresh_registry(monkeypatch):
    """The one registry as it is, restored after the test: what the test registers goes away."""
    from zoo.config import registry

    monkeypatch.setattr(registry, "_ENTRIES", {g: dict(e) for g, e in registry._ENTRIES.items()})
    monkeypatch.setattr(registry, "_tried", set(registry._tried))
    yield registry
    register_configs()  # drop nothing: the ConfigStore keeps the options it was given


@pytest.fixture
def train_cfg():
    """Factory: the train config with overrides, e.g. train_cfg("model.depth=2")."""
    return lambda *overrides: compose_config("train", list(overrides))


@pytest.fixture
def regression_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=300)
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    return tmp_path / "reg.npz"
