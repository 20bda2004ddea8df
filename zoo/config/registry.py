"""The one registry: every component a config can choose, by `(group, name)`, with its declared
settings and its builder.

Groups are the config groups: `model`, `data`, `optim` and `logger` (and `app`, the apps' own
settings). A component is registered by its declaration, `@declare(group, name, builder=...)`
(zoo.config.fields says how to write one), which names its builder lazily as
`"package.module:attribute"`: the settings are known without importing what builds it (the
zoo's own declarations import no JAX), and the builder is imported the first time it is asked for
(`builder`). A model may also register itself without a declaration (`zoo.register_model`): its
settings are then derived from its constructor.

Installed packages add components through entry points, the zoo's own included: the groups
`zoo.models`, `zoo.data`, `zoo.optimizers` and `zoo.loggers` (pyproject.toml). An entry point
names a module (importing it declares or registers its components), a registered class, or a
function called with no arguments that registers them. A broken one is skipped with a warning
naming its package; the zoo and the other packages keep working.

Free of JAX, as the whole of zoo.config: the Hydra plugin uses this at every Hydra app's start.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zoo.config.checks import check_values
from zoo.config.fields import Setting, defaults, settings_of
from zoo.config.types import SettingError
from zoo.errors import ZooError

# config group -> (entry-point group, what its components are called in messages)
ENTRY_POINT_GROUPS = {
    "model": ("zoo.models", "models"),
    "data": ("zoo.data", "data sets"),
    "optim": ("zoo.optimizers", "optimizers"),
    "logger": ("zoo.loggers", "loggers"),
}


@dataclass
class Entry:
    """One registered component. `builder` is the builder, or `"module:attribute"` until first
    use; `settings` holds the settings of a component registered without a declaration (a
    ZooError when a config cannot express them)."""

    group: str
    name: str
    declaration: type | None = None
    builder: Any = None
    settings: list[Setting] | ZooError | None = None


class UnknownComponent(ZooError, KeyError):
    """A name that is not registered in its group."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


_ENTRIES: dict[str, dict[str, Entry]] = {}
_tried: set[tuple[str, str]] = set()  # (entry-point group, value) loaded, or failed, here
_scanned = False  # whether this process has looked through the entry points yet


def declare(group: str, name: str, builder: Any = None) -> Callable[[type], type]:
    """Class decorator: `cls` (a dataclass of `zoo.setting` fields) declares the settings of
    component `name` in `group`.

    Args:
        group: the config group: `model`, `data`, `optim` or `logger`.
        name: the option's name (`model=<name>`).
        builder: what builds the component, or `"package.module:attribute"` to import it only
            when first asked for (a declaration that imports no JAX keeps option discovery and
            `--help` fast). A model's builder is its class; see the docs for each group's.

    Returns:
        The decorator, which returns `cls` unchanged but for `zoo_group` and `zoo_name`.

    Raises:
        TypeError: `cls` is not a dataclass.
        ValueError: another declaration or builder has the name already.
        SettingError: a field's type is one a config cannot express.
    """

    def decorator(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__}: a declaration must be a dataclass")
        settings_of(cls)  # fail at import for an unsupported type
        entry = _ENTRIES.setdefault(group, {}).get(name)
        if entry is not None and entry.declaration not in (None, cls):
            raise ValueError(
                f"{group} {name!r} is already declared by {entry.declaration.__name__}"
            )
        if entry is None:
            entry = _ENTRIES[group][name] = Entry(group, name)
        entry.declaration = cls
        if builder is not None and entry.builder is None:
            entry.builder = builder
        cls.zoo_group, cls.zoo_name = group, name
        return cls

    return decorator


def register(
    group: str, name: str, builder: Any, settings: list[Setting] | ZooError | None = None
) -> None:
    """Register `builder` (loaded) as what builds `name` of `group`, beside its declaration if
    there is one; `settings` for a component without a declaration.

    Raises:
        ValueError: another builder has the name already.
    """
    check_free(group, name, builder)
    entry = _ENTRIES.setdefault(group, {}).setdefault(name, Entry(group, name))
    entry.builder = builder
    if entry.declaration is None:
        entry.settings = settings


def check_free(group: str, name: str, builder: Any) -> None:
    """Raise ValueError if `name` of `group` is registered to another builder than `builder`
    (also one still named `"module:attribute"`)."""
    entry = _ENTRIES.get(group, {}).get(name)
    known = entry.builder if entry is not None else None
    if isinstance(known, str) and known != _reference(builder):
        raise ValueError(f"{group} name {name!r} is already registered to {known}")
    if known is not None and not isinstance(known, str) and known is not builder:
        raise ValueError(f"{group} name {name!r} is already registered to {known!r}")


def _reference(builder: Any) -> str:
    return f"{builder.__module__}:{builder.__qualname__}"


def declaration(group: str, name: str) -> type | None:
    """The declaration of `name` in `group` (None: none, or not registered)."""
    entry = _ENTRIES.get(group, {}).get(name)
    return entry.declaration if entry is not None else None


def declared(group: str) -> dict[str, type]:
    """The declarations of `group` by name (a copy)."""
    return {n: e.declaration for n, e in _ENTRIES.get(group, {}).items() if e.declaration}


def names(group: str) -> list[str]:
    """Every registered name of `group`, sorted (entry points loaded first)."""
    load_entry_points()
    return sorted(_ENTRIES.get(group, {}))


def entry(group: str, name: str) -> Entry:
    """The registration of `name` in `group`; UnknownComponent (naming the close matches and
    every registered name) when there is none, after looking through the entry points."""
    if name not in _ENTRIES.get(group, {}):  # not yet imported: look through the entry points
        load_entry_points()
    known = _ENTRIES.get(group, {})
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownComponent(
            f"unknown {group} {name!r}{hint} (registered: {', '.join(sorted(known))})"
        )
    return known[name]


def settings(group: str, name: str) -> list[Setting]:
    """The settings of `name` in `group`; ZooError if unknown or a config cannot express them."""
    found = entry(group, name)
    if found.declaration is not None:
        return settings_of(found.declaration)
    if found.settings is None:
        builder(group, name)  # a registration that imports its builder states its settings
    if isinstance(found.settings, ZooError):
        raise found.settings
    return found.settings or []


def configurable(group: str) -> dict[str, list[Setting]]:
    """Every component of `group` a config can choose, with its settings (entry points loaded
    first); those a config cannot express are left out (`settings` names why)."""
    load_entry_points(again=False)
    chosen = {}
    for name, found in _ENTRIES.get(group, {}).items():
        if found.declaration is not None:
            chosen[name] = settings_of(found.declaration)
        elif isinstance(found.settings, list):
            chosen[name] = found.settings
    return chosen


def builder(group: str, name: str) -> Any:
    """What builds `name` of `group`, imported on first use."""
    found = entry(group, name)
    if isinstance(found.builder, str):
        module, _, attribute = found.builder.partition(":")
        try:
            target: Any = importlib.import_module(module)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as err:
            raise ZooError(
                f"{group} {name!r}: cannot load its builder {found.builder} ({err})"
            ) from err
        found.builder = target
    if found.builder is None:
        raise ZooError(f"{group} {name!r} is declared but nothing builds it")
    return found.builder


def arguments(group: str, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The declared defaults of `name` in `group` with `values` over them, checked.

    Raises:
        SettingError: an unknown setting (with the closest one), or a value its declaration does
            not allow.
    """
    known = settings(group, name)
    names_ = [s.name for s in known]
    for key in values:
        if key not in names_:
            close = difflib.get_close_matches(key, names_, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingError(
                f"{group} {name!r} has no setting {key!r}{hint} (settings: {', '.join(names_)})"
            )
    result = defaults(known) | dict(values)
    check_values(known, result, group, declaration(group, name))
    return result


def load_entry_points(*, again: bool = True) -> None:
    """Import the components of every installed package's entry points (the zoo's own
    included), each entry point once per process. `again=False`: only if this process has not
    looked yet (a look reads every installed package's metadata)."""
    global _scanned
    if _scanned and not again:
        return
    _scanned = True
    found = importlib.metadata.entry_points()
    for ep_group, what in ENTRY_POINT_GROUPS.values():
        for entry_point in found.select(group=ep_group):
            if (ep_group, entry_point.value) in _tried:
                continue
            _tried.add((ep_group, entry_point.value))  # first: a plugin cannot recurse here
            before = {g: set(e) for g, e in _ENTRIES.items()}
            try:
                target = entry_point.load()
                if not isinstance(target, types.ModuleType | type):
                    target()
            except Exception as err:  # a plugin's bug must not take the zoo down
                for g, known in _ENTRIES.items():  # all of a plugin's components or none
                    for added in set(known) - before.get(g, set()):
                        del known[added]
                package = entry_point.dist.name if entry_point.dist else "an unknown package"
                warnings.warn(
                    f"zoo: skipped {what} from package {package!r} (entry point "
                    f"{entry_point.name} = {entry_point.value} in group {ep_group!r}): "
                    f"{type(err).__name__}: {err}",
                    RuntimeWarning,
                    stacklevel=2,
                )
