"""Hydra SearchPathPlugin: any Hydra app in an environment where the zoo is installed can compose
the zoo's config groups (`model=deep_nested`, `data=teacher`, `optim=adam`) with no set-up.

Hydra imports every plugin module at the start of every Hydra app, so this one imports only
`zoo.config.store` (zoo.config is free of JAX); the zoo's options are registered when Hydra
builds a config search path.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from zoo.config.store import config_dir, register_configs


class ZooSearchPathPlugin(SearchPathPlugin):
    """Appends the zoo's configs after the app's own, so an app's configs win on a name clash."""

    registered = False  # the schemas go into Hydra's ConfigStore once per process

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not ZooSearchPathPlugin.registered:
            register_configs()  # the group options, from the zoo's declarations
            ZooSearchPathPlugin.registered = True
        directory = config_dir()
        if directory is None:
            return
        url = f"file://{directory}"
        if all(element.path != url for element in search_path.get_path()):
            search_path.append(provider="zoo", path=url)
