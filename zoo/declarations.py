"""Settings declared once: type, default, allowed values and a one-line help per setting.

A component (a model, an optimizer, a dataset, a logger) declares its settings as a frozen
dataclass whose fields come from `setting(...)`, and registers it with `@declare(group, name)`:

    @declare("model", "deep_nested")
    @dataclass(frozen=True)
    class DeepNestedSettings:
        hidden: int = setting(8, "width of every block", ge=1, le=MAX_WIDTH)

Everything else is derived from that one declaration: the Hydra schema and the `model=<name>`
option (`schema`), the value checks and their one-line errors (`check_values`), the defaults
`zoo.create_model(name)` fills in, the README table and `--help`. A model without a declaration
gets one from its constructor's annotations and defaults (`from_signature`).

Free of JAX: the Hydra plugin imports this at every Hydra app's start.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import keyword
import math
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

from zoo.errors import ZooError

# Bounds that keep the arithmetic and the program sane; each setting may set a tighter one.
MAX_INT = 2**31 - 1
MAX_LIST = 4096  # entries of a list setting (e.g. an MLP's widths)
REQUIRED = MISSING  # a setting with no default: the user must give it

_DECLARATIONS: dict[str, dict[str, type]] = {}


class SettingError(ZooError, ValueError):
    """A value a declaration does not allow (a ValueError too, for callers of constructors)."""


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

    Bounds (`ge`, `gt`, `le`, `lt`) apply to a number or to every item of a list; integers without
    an explicit `le` stay below 2**31. `choices` lists the allowed values."""
    rule = Rule(help, ge, gt, le, lt, tuple(choices) if choices else None, min_items, max_items)
    metadata = {"zoo": rule}
    if isinstance(default, list | dict):
        frozen = tuple(default) if isinstance(default, list) else dict(default)
        return field(default_factory=lambda: type(default)(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


def declare(group: str, name: str) -> Callable[[type], type]:
    """Class decorator: `cls` (a dataclass of `setting` fields) declares `name` in `group`."""

    def decorator(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__}: a declaration must be a dataclass")
        settings_of(cls)  # fail at import for an unsupported type
        known = _DECLARATIONS.setdefault(group, {})
        if known.get(name, cls) is not cls:
            raise ValueError(f"{group} {name!r} is already declared by {known[name].__name__}")
        known[name] = cls
        cls.zoo_group, cls.zoo_name = group, name
        return cls

    return decorator


def declared(group: str) -> dict[str, type]:
    """The declarations of `group` by name (a copy)."""
    return dict(_DECLARATIONS.get(group, {}))


def declaration(group: str, name: str) -> type | None:
    return _DECLARATIONS.get(group, {}).get(name)


# --- settings from a declaration or from a signature -------------------------------------------


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
        _check_supported(cls.__name__, f.name, hints[f.name])
        result.append(Setting(config_key(f.name), hints[f.name], default, rule))
    return result


def config_key(attribute: str) -> str:
    """The setting a dataclass field declares: its name, except that a trailing underscore lets a
    setting be named like a Python keyword (PEP 8's convention): the field `from_` is `from`."""
    name = attribute.removesuffix("_")
    return name if attribute.endswith("_") and keyword.iskeyword(name) else attribute


def _attribute(key: str) -> str:
    """The dataclass field of the setting `key` (the inverse of `config_key`)."""
    return f"{key}_" if keyword.iskeyword(key) else key


def from_signature(
    func: Callable[..., Any], skip: Sequence[str] = ("self", "rngs")
) -> list[Setting]:
    """Settings from a constructor's annotated parameters and their defaults.

    Raises SettingError naming the first parameter the config cannot express (no annotation, a
    type other than int, float, str, bool, Literal[...], lists, dict[str, ...] and fixed tuples
    of these, unions of these, or optional of these)."""
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
        _check_supported(owner, param.name, hints[param.name])
        default = REQUIRED if param.default is param.empty else param.default
        if isinstance(default, tuple):
            default = list(default)
        result.append(Setting(param.name, hints[param.name], default, Rule()))
    return result


_SCALARS = (int, float, str, bool)


def _parts(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return functools.reduce(operator.or_, args), optional
    return annotation, False


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types of a union (`int | str`), else none."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return ()


def _item_type(annotation: Any) -> Any | None:
    """The item type of a list-like annotation (list[int], Sequence[int], tuple[int, ...])."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, Sequence, typing.Sequence) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _value_type(annotation: Any) -> Any | None:
    """The value type of a mapping annotation with string keys (dict[str, float])."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, Mapping) and len(args) == 2 and args[0] is str:
        return args[1]
    return None


def _fixed_types(annotation: Any) -> tuple[Any, ...] | None:
    """The entries' types of a fixed-length tuple annotation (tuple[str, str])."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and Ellipsis not in args:
        return args
    return None


def _supported(kind: Any) -> bool:
    if kind in _SCALARS or typing.get_origin(kind) is Literal:
        return True
    if _members(kind):
        return all(_supported(k) for k in _members(kind))
    inner = _item_type(kind) or _value_type(kind)
    if inner is not None:
        return _supported(inner)
    fixed = _fixed_types(kind)
    return fixed is not None and all(map(_supported, fixed))


def _check_supported(owner: str, name: str, annotation: Any) -> None:
    if not _supported(_parts(annotation)[0]):
        raise SettingError(
            f"{owner}: argument {name!r} has type {_type_name(annotation)}, which a config "
            "cannot express (int, float, str, bool, Literal[...], lists, dict[str, ...] and "
            "fixed tuples of these, unions of these, or optional)"
        )


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# --- value checks ------------------------------------------------------------------------------


def _scalar_ok(kind: Any, value: Any) -> bool:
    if typing.get_origin(kind) is Literal:
        return value in typing.get_args(kind)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def _bounds(
    rule: Rule, kind: Any, implicit: bool = True
) -> list[tuple[str, float, Callable[[float, float], bool]]]:
    bounds = [
        (op, limit, test)
        for op, limit, test in (
            (">=", rule.ge, lambda v, b: v >= b),
            (">", rule.gt, lambda v, b: v > b),
            ("<=", rule.le, lambda v, b: v <= b),
            ("<", rule.lt, lambda v, b: v < b),
        )
        if limit is not None
    ]
    if implicit and kind is int and rule.le is None and rule.lt is None:
        bounds.append(("<=", MAX_INT, lambda v, b: v <= b))
    return bounds


def requirement(s: Setting, value: Any = None) -> str:
    """What a valid value of `s` is, in words: `an integer >= 1 and <= 4096`. The bound every
    integer has (2**31 - 1) is named only for a `value` past it."""
    base, optional = _parts(s.type)
    words = _words(s, base, value, outer=True)
    return f"null or {words}" if optional else words


def _words(s: Setting, kind: Any, value: Any, outer: bool) -> str:
    """What fits `kind`; the entry counts of the rule apply to the outermost list or mapping."""
    if _members(kind):
        return " or ".join(_words(s, k, value, outer) for k in _members(kind))
    low, high = (s.rule.min_items, s.rule.max_items) if outer else (0, MAX_LIST)
    count = f"{low} to {high}" if low else f"at most {high}"
    if (item := _item_type(kind)) is not None:
        return f"a list of {count} entries, each {_words(s, item, None, False)}"
    if (inner := _value_type(kind)) is not None:
        return f"a mapping of {count} entries, each to {_words(s, inner, None, False)}"
    if (fixed := _fixed_types(kind)) is not None:
        return "[" + ", ".join(_words(s, k, None, False) for k in fixed) + "]"
    if s.rule.choices:
        return "one of " + ", ".join(map(str, s.rule.choices))
    words = "a finite number" if kind is float else _describe(kind)
    big = isinstance(value, int) and value > MAX_INT
    bounds = [f"{op} {_number(b)}" for op, b, _ in _bounds(s.rule, kind, implicit=big)]
    return f"{words} {' and '.join(bounds)}" if bounds else words


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def check_value(s: Setting, value: Any) -> str | None:
    """None if `value` is allowed for `s`, else what is allowed."""
    base, optional = _parts(s.type)
    if value is None:
        return None if optional else requirement(s)
    return None if _fits(s, base, value, outer=True) else requirement(s)


def _fits(s: Setting, kind: Any, value: Any, outer: bool) -> bool:
    if _members(kind):  # e.g. int | str
        return any(_fits(s, k, value, outer) for k in _members(kind))
    low, high = (s.rule.min_items, s.rule.max_items) if outer else (0, MAX_LIST)
    if (item := _item_type(kind)) is not None:
        return (
            _is_list(value)
            and low <= len(value) <= high
            and all(_fits(s, item, v, False) for v in value)
        )
    if (inner := _value_type(kind)) is not None:
        return (
            isinstance(value, Mapping)
            and low <= len(value) <= high
            and all(isinstance(k, str) and _fits(s, inner, v, False) for k, v in value.items())
        )
    if (fixed := _fixed_types(kind)) is not None:
        return (
            _is_list(value)
            and len(value) == len(fixed)
            and all(_fits(s, k, v, False) for k, v in zip(fixed, value, strict=True))
        )
    return _one_ok(s, kind, value)


def _is_list(value: Any) -> bool:
    """A list, a tuple or an OmegaConf ListConfig (what `hydra.utils.instantiate` passes)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _one_ok(s: Setting, kind: Any, value: Any) -> bool:
    if not _scalar_ok(kind, value):
        return False
    if s.rule.choices and value not in s.rule.choices:
        return False
    if kind in (int, float):
        if not math.isfinite(value):
            return False
        return all(test(value, bound) for _, bound, test in _bounds(s.rule, kind))
    return True


def check_values(
    settings: Sequence[Setting],
    values: dict[str, Any],
    prefix: str,
    declaration: type | None = None,
) -> None:
    """Raise SettingError for the first value a setting does not allow, or a required setting
    without a value: `model.depth=0 is invalid: must be an integer >= 1 and <= 10000`.

    Checks across settings live in the declaration's `__post_init__`, run here on the values."""
    _check_each(settings, values, prefix)
    if declaration is not None and hasattr(declaration, "__post_init__"):
        names = {s.name for s in settings}
        declaration(**{_attribute(k): v for k, v in values.items() if k in names})


def _check_each(settings: Sequence[Setting], values: dict[str, Any], prefix: str) -> None:
    for s in settings:
        key = f"{prefix}.{s.name}" if prefix else s.name
        if s.name not in values or values[s.name] is REQUIRED:
            if s.required:
                raise SettingError(f"{key} is required: set {key}=<{requirement(s)}>")
            continue
        wanted = check_value(s, values[s.name])
        if wanted is not None:
            wanted = requirement(s, values[s.name])
            raise SettingError(f"{key}={_show(values[s.name])} is invalid: must be {wanted}")


def _show(value: Any) -> str:
    if _is_list(value) and len(value) > 8:
        return f"[{', '.join(map(repr, value[:8]))}, ... ({len(value)} entries)]"
    return repr(value)


def defaults(settings: Sequence[Setting]) -> dict[str, Any]:
    """The declared defaults (required settings left out)."""
    return {s.name: s.default for s in settings if not s.required}


# --- the Hydra schema --------------------------------------------------------------------------


def config_type(annotation: Any) -> Any:
    """The annotation as OmegaConf can type it: Literal becomes its values' type; unions of
    several types become Any (the value checks still apply)."""
    base, optional = _parts(annotation)
    item, inner = _item_type(base), _value_type(base)
    if _members(base) or _fixed_types(base):
        return Any
    if item is not None:
        kind = list[config_type(item)]
    elif inner is not None:
        kind = dict[str, config_type(inner)]
    elif typing.get_origin(base) is Literal:
        kind = type(typing.get_args(base)[0])
    elif base in _SCALARS:
        kind = base
    else:
        return Any
    return kind | None if optional else kind


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
        return dataclasses.make_dataclass(name, fields)
    namespace = {"__annotations__": {key: kind for key, kind, _ in fields}}
    namespace |= {key: default for key, _, default in fields}
    return dataclass(type(name, (), namespace), init=False, repr=False, eq=False)


def describe(s: Setting, value: Any, prefix: str = "") -> str:
    """One line for `--help`: `model.depth=1  number of blocks (an integer >= 1 and <= 10000)`."""
    text = f"{s.help} ({requirement(s)})" if s.help else f"({requirement(s)})"
    return f"{prefix}{s.name}={as_text(value)}  {text}"


def as_text(value: Any) -> str:
    """A value as it is written on the command line: null, true, [1,2], 0.01."""
    if value is None:
        return "null"
    if value is REQUIRED:
        return "???"
    if isinstance(value, bool):
        return str(value).lower()
    if _is_list(value):
        return "[" + ",".join(map(as_text, value)) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{as_text(v)}" for key, v in value.items()) + "}"
    return str(value)
