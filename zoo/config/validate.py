"""The checks run on a composed config before any JAX work: unknown keys (each named with the
closest valid one), then values, then the checks across sections each declaration asks for.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from zoo.config import registry
from zoo.config.app_settings import APP_SECTIONS, NESTED
from zoo.config.checks import check_values
from zoo.config.fields import REQUIRED, Setting, settings_of
from zoo.config.lora_settings import LoraSettings
from zoo.config.plain import to_plain
from zoo.config.schema import LORA, MODEL_TARGET
from zoo.errors import ZooError

GROUPS = ("model", "data", "optim")  # one option each, chosen by `<group>=<name>`
HYDRA_NODE = "hydra"  # Hydra's settings, in a config composed with return_hydra_config=True


def group_settings(group: str, name: str) -> tuple[list[Setting], type | None]:
    """The settings of option `name` of `group` and its declaration (None for a model whose
    settings come from its constructor). ZooError for an unknown option, or a model a config
    cannot express."""
    try:
        return registry.settings(group, name), registry.declaration(group, name)
    except registry.UnknownComponent:
        if group == "model":
            raise
        raise ZooError(f"{group}={name} is unknown") from None


def _chosen_declarations(cfg: DictConfig, app: str) -> list[type]:
    """The declarations of the options `cfg` chose: its groups' and its loggers'."""
    chosen = []
    for section in APP_SECTIONS[app]:
        node = cfg.get(section)
        if section in GROUPS and isinstance(node, DictConfig) and "name" in node:
            chosen.append(registry.declaration(section, str(node.name)))
        elif section == "logger" and isinstance(node, DictConfig):
            chosen += [registry.declaration("logger", str(name)) for name in node]
    return [declared for declared in chosen if declared is not None]


def validate(cfg: DictConfig, app: str | None = None) -> None:
    """Check a composed config before any JAX work: every key is one a declaration knows (else
    ZooError naming it and the closest valid key), then every value is allowed. `app` (train or
    eval) defaults to the app whose schema composed `cfg`, else train. Hydra's own `hydra` node
    (a config composed with `return_hydra_config=True`) is left alone."""
    app = app or getattr(OmegaConf.get_type(cfg), "zoo_name", "train")
    for section in cfg:
        if section == HYDRA_NODE:  # compose(..., return_hydra_config=True): Hydra's, not ours
            continue
        if section not in _top_keys(app):
            raise ZooError(_unknown(str(section), _top_keys(app)))
    for s, value in _app_values(cfg, app):
        _check(s, value, s.name)
    for section in APP_SECTIONS[app]:
        node = cfg.get(section)
        if section in NESTED:
            _check_node(node, section, settings_of(NESTED[section]), NESTED[section])
        elif section == "logger":
            _check_loggers(node)
        elif node is not None:
            _check_group(node, section)
    resume, start = OmegaConf.select(cfg, "trainer.resume"), OmegaConf.select(cfg, "init.from")
    if app == "train" and resume and start:
        raise ZooError(
            "init.from and trainer.resume=true cannot be combined: a resumed run continues from "
            "its own checkpoint (resume a fine-tuning run without init.from)"
        )
    for declared in _chosen_declarations(cfg, app):
        check = getattr(declared, "check_config", None)
        if check is not None:  # checks against other sections (e.g. a schedule and the steps)
            check(cfg)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """`cfg` without Hydra's own `hydra` node (a copy; `cfg` itself when it has none): what a run
    keeps in config.yaml and hands its loggers is the zoo's config only."""
    if HYDRA_NODE not in cfg:
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        del cfg[HYDRA_NODE]
    return cfg


def _top_keys(app: str) -> list[str]:
    settings = settings_of(registry.declaration("app", app))
    return [s.name for s in settings] + list(APP_SECTIONS[app])


def _unknown(key: str, valid: list[str], prefix: str = "") -> str:
    """`unknown key trainer.step; did you mean trainer.steps?`, or the valid keys if none is
    close."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key {prefix}{key}; did you mean {prefix}{close[0]}?"
    where = f" of {prefix[:-1]}" if prefix else ""
    return f"unknown key {prefix}{key} (valid keys{where}: {', '.join(valid)})"


def unknown_key(full_key: str, schema_name: str | None = None) -> str:
    """The one line for a key Hydra refused to override: `unknown key ...; did you mean ...?`.
    `schema_name` is the refusing node's schema (`model_mlp_schema`), which names its option."""
    section, _, key = full_key.rpartition(".")
    group, name = section.partition(".")[0], ""
    if schema_name and schema_name.startswith(f"{group}_") and schema_name.endswith("_schema"):
        name = schema_name.removeprefix(f"{group}_").removesuffix("_schema")
    app = (schema_name or "").removeprefix("zoo_").removesuffix("_schema")
    try:
        if not section:
            valid = _top_keys(app if app in APP_SECTIONS else "train")
        elif section in NESTED:
            valid = [s.name for s in settings_of(NESTED[section])]
        elif section == f"model.{LORA}":
            valid = [s.name for s in settings_of(LoraSettings)]
        elif section.startswith("logger."):
            valid = [s.name for s in registry.settings("logger", section[7:])]
        else:
            valid = [s.name for s in group_settings(group, name)[0]]
    except (ZooError, KeyError):
        return f"unknown key {full_key}"
    return _unknown(key, valid, f"{section}." if section else "")


def _app_values(cfg: DictConfig, app: str) -> list[tuple[Setting, Any]]:
    settings = settings_of(registry.declaration("app", app))
    return [(s, resolved_value(cfg, s.name, s.name)) for s in settings if s.name in cfg]


def resolved_value(node: DictConfig, key: str, full_key: str) -> Any:
    """A resolved plain value, `REQUIRED` where it is missing (`???`)."""
    if OmegaConf.is_missing(node, key):
        return REQUIRED
    try:
        value = node[key]
    except InterpolationResolutionError as err:  # e.g. data=teacher with a token model
        hint = ""
        if full_key.startswith("data.") and "model." in str(err):
            hint = " (this data follows the model's settings: choose data the model takes)"
        raise ZooError(f"{full_key} cannot be resolved: {str(err).splitlines()[0]}{hint}") from None
    if isinstance(value, DictConfig | ListConfig):
        return to_plain(value)
    return value


def _check(s: Setting, value: Any, key: str) -> None:
    check_values([s], {s.name: value}, key.rpartition(".")[0])


def _check_node(node: Any, prefix: str, settings: list, declared: type | None) -> None:
    """Keys of `node` beyond `settings` (and the heads `_target_`, `name`) are unknown; values
    are checked one by one, then across settings by the declaration."""
    if not isinstance(node, DictConfig):
        raise ZooError(f"{prefix} must be a mapping of settings, not {node!r}")
    names = [s.name for s in settings]
    heads = {"_target_", "name"} & set(node.keys()) if prefix in GROUPS else set()
    for key in node:
        if key not in names and key not in heads:
            raise ZooError(_unknown(str(key), names, f"{prefix}."))
    values = {
        s.name: resolved_value(node, s.name, f"{prefix}.{s.name}")
        for s in settings
        if s.name in node
    }
    check_values(settings, values, prefix, declared)


def _check_group(node: Any, group: str) -> None:
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ZooError(f"{group} must be chosen as a group option: {group}=<name>")
    name = node.name
    chosen = getattr(OmegaConf.get_type(node), "zoo_name", name)
    if name != chosen:
        raise ZooError(
            f"{group}.name={name} does not choose the {group}; it is set by the option: "
            f"use {group}={name} (not {group}.name={name})"
        )
    if group == "model":
        target = node.get("_target_", MODEL_TARGET)
        if target != MODEL_TARGET:
            raise ZooError(
                f"model._target_={target!r} is not allowed: zoo builds models through its "
                f"registry ({MODEL_TARGET}) with model.name"
            )
    settings, declared = group_settings(group, str(name))
    if group == "model" and isinstance(node.get(LORA), DictConfig):  # every model's model.lora
        _check_node(node[LORA], f"model.{LORA}", settings_of(LoraSettings), LoraSettings)
        node = OmegaConf.masked_copy(node, [k for k in node if k != LORA])
    _check_node(node, group, settings, declared)


def _check_loggers(node: Any) -> None:
    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise ZooError("logger must be chosen as options: logger=<name> or logger=[a,b]")
    loggers = registry.configurable("logger")
    for name in node:
        if name not in loggers:
            raise ZooError(_unknown(str(name), list(loggers), "logger."))
        declared = registry.declaration("logger", str(name))
        _check_node(node[name], f"logger.{name}", loggers[str(name)], declared)
