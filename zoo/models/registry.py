"""The model registry, timm's way: `create_model(name, ...)`, `list_models(pattern)`, and
`@register_model(name)` for a user's own class; models are the `model` group of the one registry
(zoo.config.registry), so the zoo's own, a user's and every installed package's (the `zoo.models`
entry points) are found and checked alike.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zoo.config import registry
from zoo.config.checks import check_values
from zoo.config.fields import Setting, from_signature, settings_of
from zoo.config.types import SettingError
from zoo.errors import ZooError

UnknownModelError = registry.UnknownComponent  # an unknown model name (a ZooError, a KeyError)


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register `cls` as model `name`; its instances remember name and
    arguments (`model_spec`).

    Its settings are its declaration (`@declare("model", name)`), else they are derived from the
    constructor's annotations and defaults. Arguments are checked against them on every
    construction, and a constructor default must equal the declared one.

    Args:
        name: the registry name (`model=<name>` on the command line).

    Returns:
        The decorator; it returns `cls` with a checking `__init__` and `zoo_name`.

    Raises:
        ValueError: the name is registered to another class already.
        TypeError: the declaration names an argument the constructor lacks, or disagrees with
            one of its defaults.
    """

    def decorator(cls: type) -> type:
        registry.check_free("model", name, cls)
        init = cls.__init__
        signature = inspect.signature(init)
        settings = _settings_for(name, cls)
        declared = registry.declaration("model", name)
        registry.register("model", name, cls, settings=settings)

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            if type(self) is cls:  # a registered subclass checks and records its own spec
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                spec = {k: v for k, v in bound.arguments.items() if k not in ("self", "rngs")}
                if isinstance(settings, list):
                    check_values(settings, spec, "model", declared)
            init(self, *args, **kwargs)
            if type(self) is cls:
                # Static (hashable) so NNX keeps it in the graphdef, out of the state.
                self.zoo_spec = (name, tuple(sorted((k, _freeze(v)) for k, v in spec.items())))

        cls.__init__ = __init__
        cls.zoo_name = name
        return cls

    return decorator


def _settings_for(name: str, cls: type) -> list[Setting] | ZooError:
    """The model's declared settings, checked against its constructor; or derived from it."""
    declared = registry.declaration("model", name)
    try:
        if declared is None:
            return from_signature(cls.__init__)
    except SettingError as err:
        return ZooError(f"model {name!r} cannot be configured: {err}")
    settings = settings_of(declared)
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


def model_settings(name: str) -> list[Setting]:
    """The settings of the registered model `name`.

    Args:
        name: the registry name.

    Returns:
        Each setting's name, type, default and rule, in the declaration's order.

    Raises:
        ZooError: the name is unknown, or a config cannot express the model's settings.
    """
    return registry.settings("model", name)


class _FrozenDict(dict):
    """A mapping setting (e.g. llama's `rope_scaling`) in a spec: still a dict (JSON-plain), but
    hashable, as NNX wants of what it keeps in the graphdef."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _freeze(value: Any) -> Any:
    """Sequences (e.g. layer widths, also an OmegaConf ListConfig from `hydra.utils.instantiate`)
    become tuples and mappings hashable dicts, so the spec stays hashable and JSON-plain."""
    if isinstance(value, Mapping):
        return _FrozenDict({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(map(_freeze, value))
    return value


def model_spec(model: Any) -> tuple[str, dict[str, Any]]:
    """The registry name and constructor arguments a zoo model was built with.

    Args:
        model: a model built through the registry (or directly from a registered class).

    Returns:
        `(name, arguments)`, the arguments as given and defaulted, lists as tuples.

    Raises:
        ZooError: `model` is not a registered zoo model.
    """
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
    names = registry.names("model")
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
    """The registered builder (usually the class) of model `name`, imported on first use.

    Args:
        name: the registry name.

    Returns:
        The builder, whose instances check their arguments and know their spec.

    Raises:
        UnknownModelError: an unknown name, with the close matches and every registered name.
    """
    return registry.builder("model", name)


def create_model(name: str, *, rngs: Any, lora: Any = None, **kwargs: Any) -> Any:
    """Build the registered model `name`: exactly the model `train.py model=<name>` builds with
    these settings.

    Args:
        name: the registry name.
        rngs: the model's `nnx.Rngs`.
        lora: `model.lora` settings (rank, alpha, dropout, targets); with a rank above 0, the
            layers its targets select get adapters (zoo.models.lora.add_lora).
        **kwargs: settings over the declared defaults (`hidden=16`).

    Returns:
        The model.

    Raises:
        UnknownModelError: an unknown name.
        SettingError: an unknown setting (with the closest one) or a value its declaration does
            not allow.
    """
    model = get_model_class(name)(rngs=rngs, **model_arguments(name, kwargs))
    if lora is not None:
        from zoo.models.lora import add_lora, lora_of

        adapters = lora_of({"lora": lora})
        if adapters is not None:
            add_lora(model, rngs=rngs, **adapters)
    return model


def model_arguments(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The declared defaults of model `name` with `kwargs` over them, checked: SettingError
    names an unknown setting (with the closest one) or a value its declaration does not allow."""
    return registry.arguments("model", name, kwargs)
