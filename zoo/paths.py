"""State paths and the one glob syntax over them.

A path is a variable's place in a model's state as `nnx.split` gives it, its keys joined by `/`:
`middle/inner/kernel`, `layers/0/kernel`, `blocks/attn/query/kernel`. A pattern is a path whose
components may hold `*` (any characters within one component), `?` and `[...]` (as in fnmatch),
or be `**` (any number of whole components, none included). A pattern also selects everything
below the modules it matches: `head` selects `head/kernel` and `head/bias`, as `head/**` does.

Loading, renaming, freezing, per-path learning rates and inspection all use these functions, so
a pattern means the same everywhere, and one that matches nothing is always an error.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from flax import nnx

from zoo.errors import ZooError


def path_str(keys: Iterable[Any]) -> str:
    """`('layers', 0, 'kernel')` -> `'layers/0/kernel'`."""
    return "/".join(map(str, keys))


def flat_variables(tree: nnx.Module | nnx.State) -> dict[str, nnx.Variable]:
    """The variables of a model (RNG state left out: it is not weights) or of a State, by path."""
    state = nnx.state(tree, nnx.Not(nnx.RngState)) if isinstance(tree, nnx.Module) else tree
    return {
        path_str(path): var
        for path, var in nnx.to_flat_state(state)
        if not isinstance(var, nnx.RngState)
    }


def _components(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern:
        raise ZooError(f"path pattern {pattern!r} is empty or not a string")
    return _parse(pattern)


@functools.lru_cache(maxsize=1024)
def _parse(pattern: str) -> tuple[str, ...]:
    parts = tuple(pattern.split("/"))
    if "" in parts:
        raise ZooError(
            f"path pattern {shown(pattern)} has an empty component (leading, trailing, //)"
        )
    for part in parts:
        if "**" in part and part != "**":
            raise ZooError(
                f"path pattern {shown(pattern)}: '**' must be a whole component (a/**/b)"
            )
    # `**/**` selects what `**` does: one of a run is enough, and keeps the matching below simple
    return tuple(p for i, p in enumerate(parts) if not (p == "**" and parts[i - 1 : i] == ("**",)))


def shown(pattern: str, limit: int = 80) -> str:
    """`repr(pattern)` for one-line messages; a long one keeps its first and last components."""
    text = repr(pattern)
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-limit // 2 :]
    cut_head, cut_tail = head.rfind("/"), tail.find("/")
    head, tail = head[: cut_head + 1] if cut_head > 0 else head, tail[max(cut_tail, 0) :]
    return f"{head}...{tail}"


def check_pattern(pattern: str) -> str:
    """`pattern` if it is well formed, else a ZooError saying why."""
    _components(pattern)
    return pattern


def match(pattern: str, path: str) -> bool:
    """Whether `pattern` selects `path` (the whole path, or a module above it)."""
    return _match(_components(pattern), tuple(path.split("/")))


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """Matched as an automaton over pattern positions, one path component at a time: at most
    (len(pattern) + 1) x len(path) component tests whatever the pattern, where trying each way
    `**` could split the path (backtracking) takes exponential time. `pattern` has no two `**`
    in a row (`_parse`)."""
    end = len(pattern)
    positions = _past_globstars(pattern, {0})
    for part in path:
        if end in positions:
            return True  # the pattern matched a leading part: a module, and everything below it
        following = set()
        for i in positions:
            if pattern[i] == "**":
                following.add(i)  # `**` takes this component too
            elif component_matches(part, pattern[i]):
                following.add(i + 1)
        positions = _past_globstars(pattern, following)
        if not positions:
            return False
    return end in positions


def _past_globstars(pattern: tuple[str, ...], positions: set[int]) -> set[int]:
    """`positions` and, where one is at a `**`, the next one too (`**` taking no component)."""
    return positions | {i + 1 for i in positions if i < len(pattern) and pattern[i] == "**"}


def component_matches(name: str, pattern: str) -> bool:
    """Whether one path component matches one pattern component (`*`, `?`, `[...]`)."""
    return fnmatch.fnmatchcase(name, pattern)


def first_match(patterns: Sequence[str], path: str) -> str | None:
    """The first of `patterns` that selects `path`, or None."""
    return next((p for p in patterns if match(p, path)), None)


def select(patterns: Sequence[str], paths: Iterable[str], *, what: str = "pattern") -> list[str]:
    """The paths selected by any of `patterns`, in their order; a pattern that selects none is a
    ZooError naming it (as `what`) and the nearest paths."""
    paths = list(paths)
    check_all_match(patterns, paths, what=what)
    return [path for path in paths if first_match(patterns, path) is not None]


def check_all_match(
    patterns: Sequence[str], paths: Iterable[str], *, what: str = "pattern"
) -> None:
    """Raise a ZooError for the first of `patterns` that selects none of `paths`."""
    paths = list(paths)
    for pattern in patterns:
        if not any(match(pattern, path) for path in paths):
            hint = nearest_hint(pattern, paths)
            raise ZooError(f"{what} {shown(pattern)} matches no path; {hint}")


def nearest_hint(name: str, paths: Sequence[str], n: int = 3) -> str:
    """'nearest: a, b, c' from `paths` and their modules, or a note that there are none."""
    candidates = sorted({p for path in paths for p in _with_modules(path)})
    if not candidates:
        return "there are no paths"
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.0)
    return "nearest: " + ", ".join(close)


def _with_modules(path: str) -> Iterable[str]:
    parts = path.split("/")
    return ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
