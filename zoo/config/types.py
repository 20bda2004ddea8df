"""What a setting's type annotation allows, read from the annotation itself: the types a config
can express (int, float, str, bool, Literal[...], lists, dict[str, ...] and fixed tuples of
these, unions of these, or optional), and the type OmegaConf gives such a setting in a schema.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from zoo.errors import ZooError

SCALARS = (int, float, str, bool)


class SettingError(ZooError, ValueError):
    """A value a declaration does not allow (a ValueError too, for callers of constructors)."""


def parts(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return functools.reduce(operator.or_, args), optional
    return annotation, False


def members(annotation: Any) -> tuple[Any, ...]:
    """The types of a union (`int | str`), else none."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return ()


def item_type(annotation: Any) -> Any | None:
    """The item type of a list-like annotation (list[int], Sequence[int], tuple[int, ...])."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, Sequence, typing.Sequence) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def value_type(annotation: Any) -> Any | None:
    """The value type of a mapping annotation with string keys (dict[str, float])."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, Mapping) and len(args) == 2 and args[0] is str:
        return args[1]
    return None


def fixed_types(annotation: Any) -> tuple[Any, ...] | None:
    """The entries' types of a fixed-length tuple annotation (tuple[str, str])."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and Ellipsis not in args:
        return args
    return None


def _supported(kind: Any) -> bool:
    if kind in SCALARS or kind is type(None) or typing.get_origin(kind) is Literal:
        return True  # None: a null entry inside a list (a sharding rule's spec)
    if members(kind):
        return all(_supported(k) for k in members(kind))
    inner = item_type(kind) or value_type(kind)
    if inner is not None:
        return _supported(inner)
    fixed = fixed_types(kind)
    return fixed is not None and all(map(_supported, fixed))


def check_supported(owner: str, name: str, annotation: Any) -> None:
    """Raise SettingError when a config cannot express values of `annotation`."""
    if not _supported(parts(annotation)[0]):
        raise SettingError(
            f"{owner}: argument {name!r} has type {type_name(annotation)}, which a config "
            "cannot express (int, float, str, bool, Literal[...], lists, dict[str, ...] and "
            "fixed tuples of these, unions of these, or optional)"
        )


def type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def config_type(annotation: Any) -> Any:
    """The annotation as OmegaConf can type it: Literal becomes its values' type; unions of
    several types become Any (the value checks still apply)."""
    base, optional = parts(annotation)
    item, inner = item_type(base), value_type(base)
    if members(base) or fixed_types(base):
        return Any
    if item is not None:
        kind = list[config_type(item)]
    elif inner is not None:
        kind = dict[str, config_type(inner)]
    elif typing.get_origin(base) is Literal:
        kind = type(typing.get_args(base)[0])
    elif base in SCALARS:
        kind = base
    else:
        return Any
    return kind | None if optional else kind
