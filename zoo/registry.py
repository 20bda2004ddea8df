"""Model registry: name -> builder, with fnmatch listing and close-match suggestions."""

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

from zoo.errors import ZooError

_MODELS: dict[str, Callable[..., Any]] = {}
ENTRY_POINT_GROUP = "zoo.models"
_loaded = False  # set before loading, so a plugin that lists models while loading cannot recurse


class UnknownModelError(ZooError, KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register `cls` under `name`; instances remember name and arguments."""

    def decorator(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name]!r}")
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if type(self) is cls:  # a registered subclass records its own spec
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                spec = {k: v for k, v in bound.arguments.items() if k not in ("self", "rngs")}
                # Static (hashable) so NNX keeps it in the graphdef, out of the state.
                self.zoo_spec = (name, tuple(sorted((k, _freeze(v)) for k, v in spec.items())))

        cls.__init__ = __init__
        cls.zoo_name = name
        _MODELS[name] = cls
        return cls

    return decorator


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


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by an fnmatch pattern like 'deep*'."""
    _load_entry_points()
    names = sorted(_MODELS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def get_model_class(name: str) -> Callable[..., Any]:
    """The registered builder for `name`; unknown names fail with close matches suggested."""
    _load_entry_points()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (registered: {', '.join(sorted(_MODELS))})"
        )
    return _MODELS[name]


def create_model(name: str, *, rngs: Any, **kwargs: Any) -> Any:
    """Build the registered model `name` with `rngs` and its constructor keyword arguments."""
    return get_model_class(name)(rngs=rngs, **kwargs)


def _load_entry_points() -> None:
    """Import the built-in models, then third-party ones from the `zoo.models` entry points.

    An entry point names a module (importing it registers its models), a registered class, or a
    function called with no arguments that registers models. A broken one is skipped with a
    warning naming its package; the zoo and the other plugins keep working.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    import zoo.models  # noqa: F401  (registers the built-in models)

    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
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
