"""Value checks and their wording: whether a value fits a declared setting, and the one line
that says what fits (`model.depth=0 is invalid: must be an integer >= 1 and <= 10000`).

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from zoo.config.fields import MAX_INT, MAX_LIST, REQUIRED, Rule, Setting, attribute
from zoo.config.types import (
    SettingError,
    fixed_types,
    item_type,
    members,
    parts,
    value_type,
)


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
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return (words | {type(None): "null"})[kind]


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
    base, optional = parts(s.type)
    words = _words(s, base, value, outer=True)
    return f"null or {words}" if optional else words


def _words(s: Setting, kind: Any, value: Any, outer: bool) -> str:
    """What fits `kind`; the entry counts of the rule apply to the outermost list or mapping."""
    if members(kind):
        return " or ".join(_words(s, k, value, outer) for k in members(kind))
    low, high = (s.rule.min_items, s.rule.max_items) if outer else (0, MAX_LIST)
    count = f"{low} to {high}" if low else f"at most {high}"
    if (item := item_type(kind)) is not None:
        return f"a list of {count} entries, each {_words(s, item, None, False)}"
    if (inner := value_type(kind)) is not None:
        return f"a mapping of {count} entries, each to {_words(s, inner, None, False)}"
    if (fixed := fixed_types(kind)) is not None:
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
    base, optional = parts(s.type)
    if value is None:
        return None if optional else requirement(s)
    return None if _fits(s, base, value, outer=True) else requirement(s)


def _fits(s: Setting, kind: Any, value: Any, outer: bool) -> bool:
    if members(kind):  # e.g. int | str
        return any(_fits(s, k, value, outer) for k in members(kind))
    low, high = (s.rule.min_items, s.rule.max_items) if outer else (0, MAX_LIST)
    if (item := item_type(kind)) is not None:
        return (
            _is_list(value)
            and low <= len(value) <= high
            and all(_fits(s, item, v, False) for v in value)
        )
    if (inner := value_type(kind)) is not None:
        return (
            isinstance(value, Mapping)
            and low <= len(value) <= high
            and all(isinstance(k, str) and _fits(s, inner, v, False) for k, v in value.items())
        )
    if (fixed := fixed_types(kind)) is not None:
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
        declaration(**{attribute(k): v for k, v in values.items() if k in names})


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
