"""A composition's defaults list and merged config, kept for the next composition that would make
them again: in one process, composing `train` with the same config-group choices (`model=mlp`)
gives the same defaults list and the same merged config whatever the values set
(`optim.lr=0.5`, which Hydra applies afterwards), so only that last step is done again.

Hydra spends about nine tenths of a composition on those two steps (about 0.1 s of CPU each
time): sweeps run by the basic launcher compose once per job, `zoo.compose` once per call, the
test suite some thousand times. Hydra's own steps still run before (the overrides parsed, the
search path set) and after (the values applied, `hydra.runtime` filled in, from this process's
working directory and environment).

What the two steps read is noted as they run: each config loaded (the source that served it and
a digest of its file), each group or config looked up, each group listed, and the ConfigStore's
nodes. A composition takes what was kept only where every one of those reads gives the same
answer again, so an edited file, a config added to a group, a new search path entry or a node
stored again (`zoo.register`) composes anew. Kept: the last `KEPT` compositions; each one handed
out is a copy.

Scoped: `memoised()` patches Hydra 1.3's internals only inside; `light_composition()` enters it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import operator
import threading
from collections import OrderedDict
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

KEPT = 32  # compositions kept, the least recently used dropped first


@dataclasses.dataclass
class _Kept:
    reads: dict[tuple, Any]  # (what was asked, its arguments): the answer
    store: tuple  # the ConfigStore's nodes, in order (held: their ids stay theirs)
    defaults_list: Any  # Hydra's DefaultsList
    config: Any = None  # the merged config, once merged


_lock = threading.Lock()
_kept: OrderedDict[tuple, _Kept] = OrderedDict()


def source_file(source: Any, config_path: str) -> bytes | None:
    """The bytes of the file a file:// or pkg:// config source reads for `config_path`; None for
    another source (the ConfigStore's) or no such plain file."""
    try:
        if source.scheme() == "file":
            base = Path(source.path)
        elif source.scheme() == "pkg":
            base = Path(str(resources.files(source.path)))
        else:
            return None
        return (base / source._normalize_file_name(config_path)).read_bytes()
    except (OSError, TypeError, ValueError, ModuleNotFoundError):
        return None


def _served(repo: Any, config_path: str) -> tuple | None:
    """Which source `repo` loads `config_path` from, and a digest of that file."""
    from hydra.core.object_type import ObjectType

    source = repo.delegate._find_object_source(config_path, ObjectType.CONFIG)
    if source is None:
        return None
    text = source_file(source, config_path)
    digest = None if text is None else hashlib.blake2b(text).digest()
    return source.scheme(), source.path, source.provider, digest


def _answer(repo: Any, asked: str, arguments: tuple) -> Any:
    return _served(repo, *arguments) if asked == "load_config" else getattr(repo, asked)(*arguments)


class _Noting:
    """A config repository that notes what is read from it (see the module's docstring)."""

    def __init__(self, repo: Any, reads: dict[tuple, Any]) -> None:
        self._repo, self._reads = repo, reads

    def __getattr__(self, name: str) -> Any:  # the rest, as the repository has it
        return getattr(self._repo, name)

    def _noted(self, asked: str, *arguments: Any) -> Any:
        result = getattr(self._repo, asked)(*arguments)
        if (asked, arguments) not in self._reads:
            self._reads[asked, arguments] = _answer(self._repo, asked, arguments)
        return result

    def load_config(self, config_path: str) -> Any:
        return self._noted("load_config", config_path)

    def group_exists(self, config_path: str) -> bool:
        return self._noted("group_exists", config_path)

    def config_exists(self, config_path: str) -> bool:
        return self._noted("config_exists", config_path)

    def get_group_options(self, group_name: str, *results_filter: Any, **named: Any) -> list[str]:
        return self._noted("get_group_options", group_name, *results_filter, *named.values())


def _store_nodes() -> tuple:
    from hydra.core.config_store import ConfigStore

    nodes: list[Any] = []

    def walk(tree: dict) -> None:
        for value in tree.values():
            walk(value) if isinstance(value, dict) else nodes.append(value)

    walk(ConfigStore.instance().repo)
    return tuple(nodes)


def _still(kept: _Kept, repo: Any) -> bool:
    """Whether every read of `kept` gives the same answer from `repo` now."""
    store = _store_nodes()
    same_store = len(store) == len(kept.store) and all(map(operator.is_, store, kept.store))
    return same_store and all(_answer(repo, *read) == answer for read, answer in kept.reads.items())


def _key(repo: Any, config_name: str | None, overrides: list, *flags: bool) -> tuple:
    """What the defaults list depends on besides the files: the primary config, the overrides
    that choose configs (Hydra's own test, as in its `Overrides`: a sweep, or a group that is
    not given a mapping), the search path."""
    choices = tuple(
        o.input_line
        for o in overrides
        if o.is_sweep_override()
        or (not isinstance(o.value(), dict) and repo.group_exists(o.key_or_group))
    )
    sources = tuple((s.scheme(), s.path, s.provider) for s in repo.get_sources())
    return config_name, choices, flags, sources


@contextlib.contextmanager
def memoised() -> Iterator[None]:
    """Compositions inside take the defaults list and merged config kept for them, if any."""
    from hydra._internal import config_loader_impl
    from hydra._internal.config_repository import CachingConfigRepository
    from hydra._internal.defaults_list import Overrides

    create, merge = (
        config_loader_impl.create_defaults_list,
        config_loader_impl.ConfigLoaderImpl._compose_config_from_defaults_list,
    )

    def create_defaults_list(repo, config_name, overrides_list, prepend_hydra, skip_missing):
        if not isinstance(repo, CachingConfigRepository):
            return create(repo, config_name, overrides_list, prepend_hydra, skip_missing)
        key = _key(repo, config_name, overrides_list, prepend_hydra, skip_missing)
        with _lock:
            kept = _kept.get(key)
        if kept is not None and kept.config is not None and _still(kept, repo):
            with _lock:
                _kept.move_to_end(key)
            # Hydra's own sorting of the overrides; the choices it found, as before
            overrides = Overrides(repo=repo, overrides_list=overrides_list)
            overrides.known_choices = dict(kept.defaults_list.overrides.known_choices)
            return dataclasses.replace(
                kept.defaults_list, config_overrides=overrides.config_overrides, overrides=overrides
            )
        kept = _Kept(reads={}, store=_store_nodes(), defaults_list=None)
        noting = _Noting(repo, kept.reads)
        kept.defaults_list = create(
            noting, config_name, overrides_list, prepend_hydra, skip_missing
        )
        with _lock:
            _kept[key] = kept
            _kept.move_to_end(key)
            while len(_kept) > KEPT:
                _kept.popitem(last=False)
        return kept.defaults_list

    def compose_config_from_defaults_list(self, defaults, repo):
        with _lock:
            found = [k for k in _kept.values() if k.defaults_list.defaults is defaults]
        if not found:
            return merge(self, defaults, repo)
        (kept,) = found
        if kept.config is not None:
            return copy.deepcopy(kept.config)
        config = merge(self, defaults, _Noting(repo, kept.reads))
        kept.config = copy.deepcopy(config)  # the caller goes on to change its own
        return config

    config_loader_impl.create_defaults_list = create_defaults_list
    config_loader_impl.ConfigLoaderImpl._compose_config_from_defaults_list = (  # type: ignore[method-assign]
        compose_config_from_defaults_list
    )
    try:
        yield
    finally:
        config_loader_impl.create_defaults_list = create
        config_loader_impl.ConfigLoaderImpl._compose_config_from_defaults_list = merge  # type: ignore[method-assign]
