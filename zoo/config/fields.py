"""Settings declared once: type, default, allowed values and a one-line help per setting.

A component (a model, an optimizer, a dataset, a logger) declares its settings as a frozen
dataclass whose fields come from `setting(...)`, and registers it with `@declare(group, name)`
(zoo.config.registry):

    @declare("model", "deep_nested", builder="zoo.models.deep_nested.modeling:OuterModule")
    @dataclass(frozen=True)
    class DeepNestedSettings:
        hidden: int = setting(8, "width of every block", ge=1, le=MAX_WIDTH)

Everything else is derived from that one declaration: the Hydra schema and the `model=<name>`
option (zoo.config.schema), the value checks and their one-line errors (zoo.config.checks), the
defaults `zoo.create_model(name)` fills in, the README table and `--help`. A model without a
declaration gets one from its constructor's annotations and defaults (`from_signature`).

Free of JAX: the Hydra plugin imports this at every Hydra app's start.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

from zoo.config.types import SettingError, check_supported

# Bounds that keep the arithmetic and the program sane; each setting may set a tighter one.
MAX_INT = 2**31 - 1
MAX_LIST = 4096  # entries of a list setting (e.g. an MLP's widths)
REQUIRED = MISSING  # a setting with no default: the user must give it


@dataclass(frozen=True)
class Rule:
    """What a setting allows, beyond its type; kept in the dataclass field's metadata."""

    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    min_items: int = 0
    max_items: int = MAX_LIST


@dataclass(frozen=True)
class Setting:
    """One declared setting: name, type annotation, default (or REQUIRED) and rule."""

    name: str
    type: Any
    default: Any
    rule: Rule

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def help(self) -> str:
        return self.rule.help


def setting(
    default: Any = REQUIRED,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    min_items: int = 0,
    max_items: int = MAX_LIST,
) -> Any:
    """A dataclass field for a declaration: its default, a one-line help and what it allows.

    Args:
        default: the value when the config gives none; leave it out for a required setting.
        help: one line for `--help` and the docs.
        ge: the least value allowed (of a number, or of every item of a list).
        gt: a bound every value must exceed.
        le: the greatest value allowed; integers without `le` or `lt` stay below 2**31.
        lt: a bound every value must stay below.
        choices: the allowed values.
        min_items: the fewest entries a list or mapping setting may have.
        max_items: the most entries a list or mapping setting may have.

    Returns:
        A `dataclasses.field` carrying the rule in its metadata.
    """
    rule = Rule(help, ge, gt, le, lt, tuple(choices) if choices else None, min_items, max_items)
    metadata = {"zoo": rule}
    if isinstance(default, list | dict):
        frozen = tuple(default) if isinstance(default, list) else dict(default)
        return field(default_factory=lambda: type(default)(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


def settings_of(cls: type) -> list[Setting]:
    """The settings a declaration dataclass states, in field order."""
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        rule = f.metadata.get("zoo", Rule())
        check_supported(cls.__name__, f.name, hints[f.name])
        result.append(Setting(config_key(f.name), hints[f.name], default, rule))
    return result


def config_key(attribute: str) -> str:
    """The setting a dataclass field declares: its name, except that a trailing underscore lets a
    setting be named like a Python keyword (PEP 8's convention): the field `from_` is `from`."""
    name = attribute.removesuffix("_")
    return name if attribute.endswith("_") and keyword.iskeyword(name) else attribute


def attribute(key: str) -> str:
    """The dataclass field of the setting `key` (the inverse of `config_key`)."""
    return f"{key}_" if keyword.iskeyword(key) else key


def from_signature(
    func: Callable[..., Any], skip: Sequence[str] = ("self", "rngs")
) -> list[Setting]:
    """Settings from a constructor's annotated parameters and their defaults.

    Raises:
        SettingError: naming the first parameter the config cannot express (no annotation, a
            type other than int, float, str, bool, Literal[...], lists, dict[str, ...] and fixed
            tuples of these, unions of these, or optional of these).
    """
    hints = typing.get_type_hints(func)
    owner = getattr(func, "__qualname__", "the constructor").removesuffix(".__init__")
    result = []
    for param in inspect.signature(func).parameters.values():
        if param.name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in hints:
            raise SettingError(
                f"{owner}: argument {param.name!r} has no type annotation, so the config cannot "
                "check it; annotate it (int, float, str, bool, Literal[...], list[int], ...)"
            )
        check_supported(owner, param.name, hints[param.name])
        default = REQUIRED if param.default is param.empty else param.default
        if isinstance(default, tuple):
            default = list(default)
        result.append(Setting(param.name, hints[param.name], default, Rule()))
    return result


def defaults(settings: Sequence[Setting]) -> dict[str, Any]:
    """The declared defaults (required settings left out)."""
    return {s.name: s.default for s in settings if not s.required}
