"""`--help`: every setting of a composed config, one line each, with what it allows.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

import contextlib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.config import registry
from zoo.config.app_settings import APP_SECTIONS, NESTED
from zoo.config.checks import describe
from zoo.config.fields import settings_of
from zoo.config.validate import group_settings, resolved_value
from zoo.errors import ZooError


def settings_help(_root_: DictConfig) -> str:
    """Every setting of a composed config, one line each (`model.depth=1  number of blocks
    (an integer >= 1 and <= 10000)`), for `--help` (the `${zoo_settings:}` resolver)."""
    app = getattr(OmegaConf.get_type(_root_), "zoo_name", "train")
    lines = []

    def add(prefix: str, settings: list, node: Any) -> None:
        for s in settings:
            try:
                value = resolved_value(node, s.name, f"{prefix}{s.name}")
            except ZooError:
                value = s.default
            lines.append(describe(s, value, prefix))

    add("", settings_of(registry.declaration("app", app)), _root_)
    for section in APP_SECTIONS[app]:
        node = _root_.get(section)
        if section in NESTED:
            add(f"{section}.", settings_of(NESTED[section]), node)
        elif section == "logger":
            for name in node or {}:
                add(f"logger.{name}.", registry.settings("logger", str(name)), node[name])
        elif isinstance(node, DictConfig) and "name" in node:
            with contextlib.suppress(ZooError):
                add(f"{section}.", group_settings(section, str(node.name))[0], node)
    return "\n".join(lines).replace("$", "$$")  # Hydra fills the template with string.Template
