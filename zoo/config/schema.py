"""Hydra schemas derived from the declarations: the `<group>=<name>` options and the apps' top
levels (`zoo_train_schema`, `zoo_eval_schema`), as structured configs OmegaConf types and checks.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from zoo.config import registry
from zoo.config.app_settings import APP_SECTIONS, NESTED
from zoo.config.fields import Setting, settings_of
from zoo.config.lora_settings import LoraSettings
from zoo.config.types import config_type

MODEL_TARGET = "zoo.create_model"  # what a model option instantiates: the registry, by name
LORA = "lora"  # every model option's section of LoRA settings (zoo.config.lora_settings)


def schema(
    group: str, name: str, settings: Sequence[Setting], head: dict[str, Any] | None = None
) -> type:
    """A dataclass Hydra can use as the `<group>=<name>` option: the `head` fields (e.g. the
    model's `_target_` and `name`), then every setting with its type and default."""
    fields: list[tuple[str, Any, Any]] = [
        (key, type(value), field(default=value)) for key, value in (head or {}).items()
    ]
    for s in settings:
        kind = config_type(s.type)
        if s.required:
            fields.append((s.name, kind, field(default="???")))
        elif isinstance(s.default, list | tuple):
            frozen = tuple(s.default)
            fields.append((s.name, kind, field(default_factory=lambda f=frozen: list(f))))
        elif isinstance(s.default, dict):
            fields.append((s.name, kind, field(default_factory=_open_mapping(s.default))))
        else:
            fields.append((s.name, kind, field(default=s.default)))
    if group == "model" and not any(key == LORA for key, _, _ in fields):  # model.lora.*
        node = schema("app", LORA, settings_of(LoraSettings))
        fields.append((LORA, node, field(default=node)))
    cls = _schema_class(f"{group}_{name}_schema".replace("-", "_"), fields)
    cls.zoo_group, cls.zoo_name = group, name
    return cls


def _open_mapping(default: dict[str, Any]) -> Callable[[], Any]:
    """A mapping setting's default as a node that takes new keys: Hydra makes the composed config
    a struct, so `optim.lr_mult={head:10}` on the command line could not add `head` otherwise."""
    from omegaconf import OmegaConf

    return lambda: OmegaConf.create(dict(default), flags={"struct": False})


def _schema_class(name: str, fields: list[tuple[str, Any, Any]]) -> type:
    """`dataclasses.make_dataclass`, also with a field named like a Python keyword (`from`),
    which make_dataclass refuses: such a class is only a schema, whose fields OmegaConf reads
    and whose `__init__` (which could not name the field) it never calls."""
    if not any(keyword.iskeyword(key) for key, _, _ in fields):
        return make_dataclass(name, fields)
    namespace = {"__annotations__": {key: kind for key, kind, _ in fields}}
    namespace |= {key: default for key, _, default in fields}
    return dataclass(type(name, (), namespace), init=False, repr=False, eq=False)


def app_schema(app: str) -> type:
    """The structured config of an app's top level (`zoo_train_schema`, `zoo_eval_schema`)."""
    fields: list[tuple[str, Any, Any]] = []
    for s in settings_of(registry.declaration("app", app)):
        if isinstance(s.default, list | dict):  # a fresh copy for each instance
            default = field(default_factory=lambda d=s.default: type(d)(d))
        else:
            default = field(default=s.default)
        fields.append((s.name, config_type(s.type), default))
    for section in APP_SECTIONS[app]:
        if section in NESTED:
            node = schema("app", section, settings_of(NESTED[section]))
            fields.append((section, node, field(default=node)))  # OmegaConf reads the class
        else:
            fields.append((section, Any, field(default=None)))
    cls = make_dataclass(f"zoo_{app}_schema", fields)
    cls.zoo_group, cls.zoo_name = "app", app
    return cls
