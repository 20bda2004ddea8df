"""Hydra's side of the config: the zoo's YAML directory, the resolvers its configs use, and every
declaration put into Hydra's ConfigStore as a `<group>=<name>` option (no YAML file needed) with
the apps' schemas `zoo_train_schema` and `zoo_eval_schema`.

Free of JAX, as the whole of zoo.config: the Hydra plugin registers the options at every Hydra
app's start.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from zoo.config import registry
from zoo.config.app_settings import APP_SECTIONS
from zoo.config.help import settings_help
from zoo.config.schema import MODEL_TARGET, app_schema, schema

PACKAGE = Path(__file__).resolve().parents[1]  # the zoo package's directory
STORED_GROUPS = ("model", "data", "optim", "logger")
_registered: tuple | None = None  # the options register_configs stored last


def config_dir() -> Path | None:
    """Where the zoo's YAML files are: `zoo/_configs` in an installed wheel, or the top-level
    `configs/` (their single source) in a source checkout installed in editable compat mode."""
    root = PACKAGE.parent  # site-packages, or the checkout
    for candidate in (root / "zoo" / "_configs", root / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    return None


def recipe_file(relative: str) -> str:
    """The absolute path of a file the zoo ships for its recipes (`zoo/recipes/<relative>`),
    wherever it is installed: `${zoo.recipe_file:finetune_digits/parity.npz}` in a config."""
    return str(PACKAGE / "recipes" / relative)


def unique_suffix() -> str:
    """Microseconds and pid: with the time to the second in front, unique among the runs of one
    host even when they start in the same second (registered as the `${zoo.unique:}` resolver,
    cached per config, so every use in one run and its sweep jobs agrees)."""
    return f"{datetime.now():%f}-{os.getpid()}"


def register_resolvers() -> None:
    """The resolvers the zoo's configs use: `${zoo.unique:}` (run directories),
    `${zoo.recipe_file:...}` (the files recipes start from) and `${zoo_settings:}` (`--help`)."""
    OmegaConf.register_new_resolver("zoo.unique", unique_suffix, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("zoo_settings", settings_help, replace=True)
    OmegaConf.register_new_resolver("zoo.recipe_file", recipe_file, replace=True)


def register_configs() -> None:
    """Put every registered component into Hydra's ConfigStore: the `<group>=<name>` options and
    the apps' schemas `zoo_train_schema`, `zoo_eval_schema`.

    Every installed package's components (the entry points) are loaded here so that their
    options exist; the zoo's own are known from their JAX-free declarations."""
    global _registered
    register_resolvers()
    options = {group: registry.configurable(group) for group in STORED_GROUPS}
    stored = tuple((group, tuple(found)) for group, found in options.items())
    if stored == _registered:  # zoo-train registers, then Hydra's plugin asks again
        return
    cs = ConfigStore.instance()
    for app in APP_SECTIONS:
        cs.store(name=f"zoo_{app}_schema", node=app_schema(app))
    for group in ("data", "optim"):
        for name, settings in options[group].items():
            node = schema(group, name, settings, head={"name": name})
            cs.store(group=group, name=name, node=node)
    for name, settings in options["model"].items():
        head = {"_target_": MODEL_TARGET, "name": name}
        cs.store(group="model", name=name, node=schema("model", name, settings, head))
    for name, settings in options["logger"].items():
        cs.store(group="logger", name=name, node={name: schema("logger", name, settings)})
    _registered = stored
