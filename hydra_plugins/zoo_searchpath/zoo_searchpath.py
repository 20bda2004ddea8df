"""Hydra SearchPathPlugin: any Hydra app in an environment where the zoo is installed can compose
the zoo's config groups (`model=deep_nested`, `data=teacher`, `optim=adam`) with no set-up.

Hydra imports every plugin module at the start of every Hydra app, so this one imports only what
Hydra has already loaded; the zoo's schemas (`zoo.config`, free of JAX) are registered when Hydra
builds a config search path.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


def zoo_config_dir() -> Path | None:
    """Where the zoo's YAML files are: `zoo/_configs` in an installed wheel, or the top-level
    `configs/` (their single source) in a source checkout installed in editable compat mode."""
    root = Path(__file__).resolve().parents[2]  # site-packages, or the checkout
    for candidate in (root / "zoo" / "_configs", root / "configs"):
        if (candidate / "model").is_dir():
            return candidate
    return None


class ZooSearchPathPlugin(SearchPathPlugin):
    """Appends the zoo's configs after the app's own, so an app's configs win on a name clash."""

    registered = False  # the schemas go into Hydra's ConfigStore once per process

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not ZooSearchPathPlugin.registered:
            from zoo.config import register_configs

            register_configs()  # the zoo's YAML files extend these schemas
            ZooSearchPathPlugin.registered = True
        directory = zoo_config_dir()
        if directory is None:
            return
        url = f"file://{directory}"
        if all(element.path != url for element in search_path.get_path()):
            search_path.append(provider="zoo", path=url)
