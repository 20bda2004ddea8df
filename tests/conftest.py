"""Shared test helpers: compose configs like train.py does, and run the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from zoo.cli import use_compilation_cache
from zoo.config import register_configs

# Before JAX is imported: in-process runs load the steps other tests (and the subprocesses, which
# the entry points point at the same cache) already compiled.
use_compilation_cache()

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

register_configs()


def compose_config(name: str = "train", overrides: list[str] | None = None):
    """The config `python <name>.py <overrides>` would see."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
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
def train_cfg():
    """Factory: the train config with overrides, e.g. train_cfg("model.depth=2")."""
    return lambda *overrides: compose_config("train", list(overrides))
