"""The apps' settings (train and eval), the Hydra schemas derived from every declaration, and
the checks run on a composed config before any JAX work: unknown keys, then values.

Kept free of JAX imports: the Hydra plugin imports this module at every Hydra app's start.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from zoo import declarations as decl
from zoo.declarations import declare, setting
from zoo.errors import ZooError

MODEL_TARGET = "zoo.create_model"
GROUPS = ("model", "data", "optim")  # one option each, chosen by `<group>=<name>`
EVAL_MODES = ("compare", "summary", "inspect", "diff")
HYDRA_NODE = "hydra"  # Hydra's settings, in a config composed with return_hydra_config=True


@declare("app", "trainer")
@dataclass(frozen=True)
class TrainerSettings:
    """How long and how a run trains, checkpoints and spreads over devices."""

    steps: int = setting(2000, "optimizer updates", ge=0)
    batch_size: int = setting(256, "examples per update", ge=1, le=1 << 24)
    eval_every: int = setting(500, "steps between validations", ge=1)
    log_every: int = setting(100, "steps fused into one dispatch between log points", ge=1)
    ckpt_every: int | None = setting(
        None, "steps between checkpoints; null: 500, gated by ckpt_every_seconds", ge=1
    )
    ckpt_every_seconds: float | None = setting(
        None,
        "a multiple of ckpt_every saves only this long after the last save; null: 300 s when "
        "ckpt_every is null, no wait when it is set",
        ge=0,
    )
    keep_checkpoints: int = setting(3, "newest checkpoints kept", ge=1, le=1000)
    resume: bool = setting(False, "continue the run in this directory from its latest checkpoint")
    ckpt_dir: str | None = setting(
        None, "null: <run dir>/checkpoints; several processes need one they share"
    )
    devices: str = setting("auto", "data parallel over auto (all) or this many local devices")
    distributed: bool | None = setting(
        None, "join a multi-host run; null: when srun/mpirun launched several tasks"
    )
    coordinator_address: str | None = setting(None, "process 0's host:port (outside SLURM/MPI)")
    num_processes: int | None = setting(None, "processes in the run (outside SLURM/MPI)", ge=1)
    process_id: int | None = setting(None, "this process's index (outside SLURM/MPI)", ge=0)
    # training recipes (zoo/gradients.py, zoo/loop.py, zoo/monitor.py)
    accumulate: int = setting(1, "batches of batch_size averaged into each update", ge=1, le=4096)
    ema: float | None = setting(
        None, "decay of a moving average of the weights, validated and saved; null: off", gt=0, lt=1
    )
    monitor: str = setting("val_loss", "the logged metric that picks the best model (best/)")
    monitor_mode: str = setting(
        "min", "whether the best monitor value is the min or max", choices=("min", "max")
    )
    patience: int | None = setting(
        None, "stop after this many evaluations without a better monitor value; null: never", ge=1
    )
    checkpoints: bool = setting(True, "save checkpoints; false: none, so no resume (debug=fast)")
    plots: bool = setting(True, "draw loss.png at the end of the run")
    profile_chunks: int = setting(
        0,
        "trace this many dispatches after the first with jax.profiler into <run dir>/profile/",
        ge=0,
        le=1000,
    )

    def __post_init__(self) -> None:
        if self.resume and not self.checkpoints:
            raise decl.SettingError(
                "trainer.resume=true needs checkpoints: drop trainer.checkpoints=false"
            )
        devices = self.devices
        if devices != "auto" and not (devices.isdigit() and 1 <= int(devices) <= 1 << 16):
            raise decl.SettingError(
                f"trainer.devices={devices!r} is invalid: must be auto or an integer >= 1"
            )
        if self.accumulate * self.batch_size > 1 << 24:
            raise decl.SettingError(
                f"trainer.accumulate * trainer.batch_size = {self.accumulate * self.batch_size} "
                f"examples per update is more than {1 << 24}"
            )
        address = self.coordinator_address
        if address is not None and not address.rpartition(":")[2].isdigit():
            raise decl.SettingError(
                f"trainer.coordinator_address={address!r} is invalid: must be null or host:port"
            )


@declare("app", "init")
@dataclass(frozen=True)
class InitSettings:
    """Where a run's weights start from (weights only: step 0, a fresh optimizer), by state path
    (zoo.surgery.load_weights). The field `from_` is the setting `init.from`."""

    from_: str | None = setting(
        None, "a run, checkpoint step or pretrained directory to start from; null: fresh weights"
    )
    strict: bool = setting(True, "stop on any path missing, unexpected or of another shape")
    rename: dict[str, str] | list[tuple[str, str]] | None = setting(
        None, "regex -> replacement on the source's paths, in order: {a:b} or [[regex,repl]]"
    )
    include: list[str] = setting([], "path patterns that take part; empty: all")
    exclude: list[str] = setting([], "path patterns that stay as initialised")

    def __post_init__(self) -> None:
        if self.from_ is None and (self.rename or self.include or self.exclude):
            raise decl.SettingError(
                "init.rename, init.include and init.exclude need init.from=<a run, checkpoint "
                "step or pretrained directory>"
            )


@declare("app", "train")
@dataclass(frozen=True)
class TrainSettings:
    """python train.py: the top level of the train config."""

    seed: int = setting(0, "initialises the model and draws the batches", ge=0)


@declare("app", "eval")
@dataclass(frozen=True)
class EvalSettings:
    """python eval.py: the top level of the eval config."""

    seed: int = setting(0, "initialises the model", ge=0)
    x: list[float] | None = setting(None, "the input; null: a normal draw from input_seed")
    input_seed: int = setting(0, "draws the input when x is null", ge=0)
    run_dir: str | None = setting(None, "a train run's directory: evaluate its model")
    mode: str = setting(
        "compare",
        "compare with the seed's function; summary; inspect source's weights; diff a and b",
        choices=EVAL_MODES,
    )
    source: str | None = setting(None, "mode=inspect: a run, checkpoint step or pretrained dir")
    a: str | None = setting(None, "mode=diff: the first run, checkpoint step or pretrained dir")
    b: str | None = setting(None, "mode=diff: the second, compared with a")
    paths: list[str] = setting([], "mode=inspect, diff: path patterns to show; empty: all")


# The top level of each app: its own settings, then these sections (each a group or a schema).
APP_SECTIONS: dict[str, tuple[str, ...]] = {
    "train": ("model", "data", "optim", "trainer", "logger", "init"),
    "eval": ("model", "data"),
}
# sections that are one fixed schema, not a group
NESTED = {"trainer": TrainerSettings, "init": InitSettings}


def app_schema(app: str) -> type:
    """The structured config of an app's top level (`zoo_train_schema`, `zoo_eval_schema`)."""
    fields: list[tuple[str, Any, Any]] = []
    for s in decl.settings_of(decl.declaration("app", app)):
        if isinstance(s.default, list | dict):  # a fresh copy for each instance
            default = field(default_factory=lambda d=s.default: type(d)(d))
        else:
            default = field(default=s.default)
        fields.append((s.name, decl.config_type(s.type), default))
    for section in APP_SECTIONS[app]:
        if section in NESTED:
            node = decl.schema("app", section, decl.settings_of(NESTED[section]))
            fields.append((section, node, field(default=node)))  # OmegaConf reads the class
        else:
            fields.append((section, Any, field(default=None)))
    cls = make_dataclass(f"zoo_{app}_schema", fields)
    cls.zoo_group, cls.zoo_name = "app", app
    return cls


def config_dir() -> Path | None:
    """Where the zoo's YAML files are: `zoo/_configs` in an installed wheel, or the top-level
    `configs/` (their single source) in a source checkout installed in editable compat mode."""
    root = Path(__file__).resolve().parents[1]  # site-packages, or the checkout
    for candidate in (root / "zoo" / "_configs", root / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    return None


def recipe_file(relative: str) -> str:
    """The absolute path of a file the zoo ships for its recipes (`zoo/recipes/<relative>`),
    wherever it is installed: `${zoo.recipe_file:finetune_digits/parity.npz}` in a config."""
    return str(Path(__file__).resolve().parent / "recipes" / relative)


def load_declarations() -> None:
    """Import the zoo's own declarations of the model, data, optim groups (no JAX)."""
    import zoo.data_settings  # noqa: F401  (each of these declares its group's options)
    import zoo.logger_settings  # noqa: F401
    import zoo.models.deep_nested_settings  # noqa: F401
    import zoo.models.mlp_settings  # noqa: F401
    import zoo.models.transformer_settings  # noqa: F401
    import zoo.optim_settings  # noqa: F401


def group_settings(group: str, name: str) -> tuple[list[decl.Setting], type | None]:
    """The settings of option `name` of `group` and its declaration (None for a model whose
    settings come from its constructor). ZooError for a model a config cannot express."""
    load_declarations()
    declared = decl.declaration(group, name)
    if declared is not None:
        return decl.settings_of(declared), declared
    if group == "model":
        from zoo.registry import model_settings

        return model_settings(name), None
    raise ZooError(f"{group}={name} is unknown")


STORED_GROUPS = ("data", "optim", "logger")
_registered: tuple | None = None  # the options register_configs stored last


def register_configs() -> None:
    """Put every declaration into Hydra's ConfigStore: the `<group>=<name>` options (no YAML
    file needed) and the apps' schemas `zoo_train_schema`, `zoo_eval_schema`.

    Third-party models (the `zoo.models` entry points of other packages) are imported here so
    that their options exist; the zoo's own are known from their JAX-free declarations."""
    from zoo.registry import configurable_models
    from zoo.rundir import register_resolvers

    global _registered
    load_declarations()
    register_resolvers()  # ${zoo.unique:} in the run directory's name

    OmegaConf.register_new_resolver("zoo_settings", settings_help, replace=True)
    OmegaConf.register_new_resolver("zoo.recipe_file", recipe_file, replace=True)
    models = configurable_models()
    options = (tuple((g, tuple(decl.declared(g))) for g in STORED_GROUPS), tuple(models))
    if options == _registered:  # zoo-train registers, then Hydra's plugin asks again
        return
    cs = ConfigStore.instance()
    for app in APP_SECTIONS:
        cs.store(name=f"zoo_{app}_schema", node=app_schema(app))
    for group in ("data", "optim"):
        for name, cls in decl.declared(group).items():
            node = decl.schema(group, name, decl.settings_of(cls), head={"name": name})
            cs.store(group=group, name=name, node=node)
    for name, settings in models.items():
        head = {"_target_": MODEL_TARGET, "name": name}
        cs.store(group="model", name=name, node=decl.schema("model", name, settings, head))
    for name, cls in decl.declared("logger").items():
        node = decl.schema("logger", name, decl.settings_of(cls))
        cs.store(group="logger", name=name, node={name: node})
    _registered = options


def settings_help(_root_: DictConfig) -> str:
    """Every setting of a composed config, one line each (`model.depth=1  number of blocks
    (an integer >= 1 and <= 10000)`), for `--help` (the `${zoo_settings:}` resolver)."""
    app = getattr(OmegaConf.get_type(_root_), "zoo_name", "train")
    lines = []

    def add(prefix: str, settings: list, node: Any) -> None:
        for s in settings:
            try:
                value = _value(node, s.name, f"{prefix}{s.name}")
            except ZooError:
                value = s.default
            lines.append(decl.describe(s, value, prefix))

    add("", decl.settings_of(decl.declaration("app", app)), _root_)
    for section in APP_SECTIONS[app]:
        node = _root_.get(section)
        if section in NESTED:
            add(f"{section}.", decl.settings_of(NESTED[section]), node)
        elif section == "logger":
            for name in node or {}:
                cls = decl.declared("logger")[str(name)]
                add(f"logger.{name}.", decl.settings_of(cls), node[name])
        elif isinstance(node, DictConfig) and "name" in node:
            with contextlib.suppress(ZooError):
                add(f"{section}.", group_settings(section, str(node.name))[0], node)
    return "\n".join(lines).replace("$", "$$")  # Hydra fills the template with string.Template


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
            _check_node(node, section, decl.settings_of(NESTED[section]), NESTED[section])
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
    if app == "train" and cfg.get("optim") is not None and cfg.get("trainer") is not None:
        from zoo.optim_settings import check_against_trainer

        check_against_trainer(cfg.optim, cfg.trainer)


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
    settings = decl.settings_of(decl.declaration("app", app))
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
    try:
        if not section:
            valid = _top_keys("train")
        elif section in NESTED:
            valid = [s.name for s in decl.settings_of(NESTED[section])]
        elif section.startswith("logger."):
            valid = [s.name for s in decl.settings_of(decl.declared("logger")[section[7:]])]
        else:
            valid = [s.name for s in group_settings(group, name)[0]]
    except (ZooError, KeyError):
        return f"unknown key {full_key}"
    return _unknown(key, valid, f"{section}." if section else "")


def _app_values(cfg: DictConfig, app: str) -> list[tuple[decl.Setting, Any]]:
    settings = decl.settings_of(decl.declaration("app", app))
    return [(s, _value(cfg, s.name, s.name)) for s in settings if s.name in cfg]


def _value(node: DictConfig, key: str, full_key: str) -> Any:
    """A resolved plain value, `decl.REQUIRED` where it is missing (`???`)."""
    if OmegaConf.is_missing(node, key):
        return decl.REQUIRED
    try:
        value = node[key]
    except InterpolationResolutionError as err:  # e.g. data=teacher with a token model
        hint = ""
        if full_key.startswith("data.") and "model." in str(err):
            hint = " (this data follows the model's settings: choose data the model takes)"
        raise ZooError(f"{full_key} cannot be resolved: {str(err).splitlines()[0]}{hint}") from None
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _check(s: decl.Setting, value: Any, key: str) -> None:
    decl.check_values([s], {s.name: value}, key.rpartition(".")[0])


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
        s.name: _value(node, s.name, f"{prefix}.{s.name}") for s in settings if s.name in node
    }
    decl.check_values(settings, values, prefix, declared)


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
    _check_node(node, group, settings, declared)


def _check_loggers(node: Any) -> None:
    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise ZooError("logger must be chosen as options: logger=<name> or logger=[a,b]")
    loggers = decl.declared("logger")
    for name in node:
        if name not in loggers:
            raise ZooError(_unknown(str(name), list(loggers), "logger."))
        cls = loggers[str(name)]
        _check_node(node[name], f"logger.{name}", decl.settings_of(cls), cls)
    from zoo.logger_settings import check_destinations

    check_destinations(OmegaConf.to_container(node, resolve=True))
