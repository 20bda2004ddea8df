"""Model registry: name -> builder and its declared settings, with fnmatch listing and
close-match suggestions. Every model, the zoo's own included, arrives through the `zoo.models`
entry points (or `@register_model` in a module the user imports)."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import inspect
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from zoo import declarations as decl
from zoo.errors import ZooError

_MODELS: dict[str, Callable[..., Any]] = {}
_SETTINGS: dict[str, list[decl.Setting] | ZooError] = {}  # an error: not configurable
ENTRY_POINT_GROUP = "zoo.models"
BUILTIN_PREFIX = "zoo.models."  # the zoo's own entry points
_tried: set[str] = set()  # entry points loaded (or failed) in this process


class UnknownModelError(ZooError, KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register `cls` under `name`; instances remember name and arguments.

    Its settings are its declaration (`@declare("model", name)`), else they are derived from the
    constructor's annotations and defaults. Arguments are checked against them on every
    construction, and a constructor default must equal the declared one."""

    def decorator(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name]!r}")
        init = cls.__init__
        signature = inspect.signature(init)
        settings = _settings_for(name, cls)
        declared = decl.declaration("model", name)

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            if type(self) is cls:  # a registered subclass checks and records its own spec
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                spec = {k: v for k, v in bound.arguments.items() if k not in ("self", "rngs")}
                if isinstance(settings, list):
                    decl.check_values(settings, spec, "model", declared)
            init(self, *args, **kwargs)
            if type(self) is cls:
                # Static (hashable) so NNX keeps it in the graphdef, out of the state.
                self.zoo_spec = (name, tuple(sorted((k, _freeze(v)) for k, v in spec.items())))

        cls.__init__ = __init__
        cls.zoo_name = name
        _MODELS[name] = cls
        _SETTINGS[name] = settings
        return cls

    return decorator


def _settings_for(name: str, cls: type) -> list[decl.Setting] | ZooError:
    """The model's declared settings, checked against its constructor; or derived from it."""
    declared = decl.declaration("model", name)
    try:
        if declared is None:
            return decl.from_signature(cls.__init__)
    except decl.SettingError as err:
        return ZooError(f"model {name!r} cannot be configured: {err}")
    settings = decl.settings_of(declared)
    parameters = inspect.signature(cls.__init__).parameters
    for s in settings:
        param = parameters.get(s.name)
        if param is None:
            raise TypeError(f"{cls.__name__} declares {s.name!r} but takes no such argument")
        if param.default is not param.empty and _freeze(param.default) != _freeze(s.default):
            raise TypeError(
                f"{cls.__name__}({s.name}={param.default!r}) disagrees with its declaration "
                f"{declared.__name__}.{s.name}={s.default!r}"
            )
    return settings


def model_settings(name: str) -> list[decl.Setting]:
    """The settings of the registered model `name`; ZooError if a config cannot express them."""
    get_model_class(name)
    settings = _SETTINGS[name]
    if isinstance(settings, ZooError):
        raise settings
    return settings


def _freeze(value: Any) -> Any:
    """Sequences (e.g. layer widths, also an OmegaConf ListConfig from `hydra.utils.instantiate`)
    become tuples so the spec stays hashable and JSON-plain."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(map(_freeze, value))
    return value


def model_spec(model: Any) -> tuple[str, dict[str, Any]]:
    """The registry name and constructor arguments a zoo model was built with."""
    spec = getattr(model, "zoo_spec", None)
    if spec is None:
        raise ZooError(f"{type(model).__name__} is not a registered zoo model")
    name, items = spec
    return name, dict(items)


def list_models(
    filter: str | Sequence[str] | None = "", *, exclude_filters: str | Sequence[str] = ()
) -> list[str]:
    """Sorted registered model names, as timm's `list_models` filters them.

    Args:
        filter: an fnmatch pattern (`"deep*"`) or a list of them: the names any one matches;
            empty (or None): every name.
        exclude_filters: a pattern or a list of them: the names any one matches are left out.

    Returns:
        The matching names, sorted.
    """
    _load_entry_points()
    names = sorted(_MODELS)
    if filter:
        chosen = _patterns(filter)
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in chosen)]
    dropped = _patterns(exclude_filters)
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in dropped)]


def _patterns(patterns: str | Sequence[str] | None) -> list[str]:
    """One pattern or several as a list (empty patterns left out)."""
    if isinstance(patterns, str):
        return [patterns] if patterns else []
    return [p for p in patterns or () if p]


def get_model_class(name: str) -> Callable[..., Any]:
    """The registered builder for `name`; unknown names fail with close matches suggested."""
    if name not in _MODELS:  # not yet imported: look through the entry points (~5 ms a scan)
        _load_entry_points()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (registered: {', '.join(sorted(_MODELS))})"
        )
    return _MODELS[name]


def create_model(name: str, *, rngs: Any, **kwargs: Any) -> Any:
    """Build the registered model `name` with `rngs` and settings: the declared defaults with
    `kwargs` over them, exactly the model `train.py model=<name>` builds with these overrides."""
    return get_model_class(name)(rngs=rngs, **model_arguments(name, kwargs))


def model_arguments(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The declared defaults of model `name` with `kwargs` over them, checked: SettingError
    names an unknown setting (with the closest one) or a value its declaration does not allow."""
    settings = model_settings(name)
    known = [s.name for s in settings]
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise decl.SettingError(
                f"model {name!r} has no setting {key!r}{hint} (settings: {', '.join(known)})"
            )
    arguments = decl.defaults(settings) | kwargs
    decl.check_values(settings, arguments, "model", decl.declaration("model", name))
    return arguments


def configurable_models() -> dict[str, list[decl.Setting]]:
    """Every model a config can choose, with its settings: the zoo's own from their declarations
    (without importing JAX) and every other package's, imported from its entry point. Models a
    config cannot express are left out (`model_settings` names why)."""
    _load_entry_points(builtin=False)
    models = {name: decl.settings_of(cls) for name, cls in decl.declared("model").items()}
    for name, settings in _SETTINGS.items():
        if not isinstance(settings, ZooError):
            models[name] = settings
    return models


def _is_builtin(entry_point: importlib.metadata.EntryPoint) -> bool:
    return entry_point.value.startswith(BUILTIN_PREFIX)


def _load_entry_points(builtin: bool = True) -> None:
    """Import the models of the `zoo.models` entry points: the zoo's own (pyproject.toml; with
    `builtin=False` left for later) and every other installed package's.

    An entry point names a module (importing it registers its models), a registered class, or a
    function called with no arguments that registers models. A broken one is skipped with a
    warning naming its package; the zoo and the other plugins keep working.
    """
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value in _tried or (_is_builtin(entry_point) and not builtin):
            continue
        _tried.add(entry_point.value)  # before loading: a plugin listing models cannot recurse
        before = set(_MODELS)
        try:
            target = entry_point.load()
            if not isinstance(target, types.ModuleType | type):
                target()
        except Exception as err:  # a plugin's bug must not take the zoo down
            for name in set(_MODELS) - before:  # all of a plugin's models or none
                del _MODELS[name]
            package = entry_point.dist.name if entry_point.dist else "an unknown package"
            warnings.warn(
                f"zoo: skipped models from package {package!r} (entry point "
                f"{entry_point.name} = {entry_point.value} in group {ENTRY_POINT_GROUP!r}): "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=2,
            )
