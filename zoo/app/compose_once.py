"""One Hydra composition per app start instead of two, and no copy of the ConfigStore per
composition: the same configs, about 40% less start-up before the task runs.

Hydra 1.3 composes every app's config twice (hydra issue 3440): `get_mode` composes it in full
only to read `hydra.mode`, then `run` or `multirun` composes it again. The two differ only where
a command has sweep values (validated differently) or a config group left `???` (skipped by the
first). Outside those, the first composition, done the way `run` does it, is the one `run` or
`multirun` would make, save the `hydra.mode=...` override Hydra appends in between, which is
applied to it the way Hydra applies any override. Commands with sweep values, a `???` group or
another Hydra version go Hydra's own way.

Each composition also deep-copies its config repository, and with it the whole ConfigStore; the
store is only read (each load copies the node it returns), so the copy shares it, as Hydra's own
later versions do by looking the store up each time (hydra pull request 2928). And each parses
every YAML file it reads again (about a fifth of its time): a file whose text is the same as
before gives a copy of what its parse gave then. A composition that would make a defaults list
and merged config made before in the process takes a copy of those (zoo/app/composition_memo.py).

Scoped: the patches hold only inside `compose_once()` / `light_composition()`, which the zoo's
own apps, `zoo.compose` and the model table enter; importing the zoo changes nothing in another
Hydra app.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from zoo.app.composition_memo import memoised, source_file

_KNOWN_HYDRA = ("1.3.",)  # the versions whose internals this was written against
_MISSING_DEFAULT = ("You must specify", "Missing ConfigDefault")  # a `???` in a defaults list


def _known_hydra() -> bool:
    import hydra

    return hydra.__version__.startswith(_KNOWN_HYDRA)


@contextlib.contextmanager
def light_composition() -> Iterator[None]:
    """Compositions inside share the live ConfigStore instead of deep-copying it, and read each
    unchanged config file once."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import (
        ImportlibResourcesConfigSource,
    )
    from hydra.core.config_store import ConfigStore

    if not _known_hydra() or "__deepcopy__" in vars(ConfigStore):  # not Hydra 1.3, or nested
        yield
        return
    sources = (FileConfigSource, ImportlibResourcesConfigSource)
    loads = [source.load_config for source in sources]
    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]
    for source, load in zip(sources, loads, strict=True):
        source.load_config = _parsed_once(load)  # type: ignore[method-assign]
    try:
        with memoised():
            yield
    finally:
        del ConfigStore.__deepcopy__  # type: ignore[attr-defined]
        for source, load in zip(sources, loads, strict=True):
            source.load_config = load  # type: ignore[method-assign]


_parsed: dict[tuple, Any] = {}  # (source, config, digest of its text) -> its ConfigResult


def _parsed_once(load: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def load_config(self: Any, config_path: str) -> Any:
        text = source_file(self, config_path)  # Hydra's own configs are pkg://
        if text is None:  # not a plain file
            return load(self, config_path)
        key = (self.scheme(), self.path, config_path, hashlib.blake2b(text).digest())
        if key not in _parsed:
            _parsed[key] = load(self, config_path)
        kept = _parsed[key]  # never handed out: composing changes what it loads
        return dataclasses.replace(
            kept, config=copy.deepcopy(kept.config), header=dict(kept.header)
        )

    return load_config


@contextlib.contextmanager
def compose_once() -> Iterator[None]:
    """Apps started inside compose their config once (see the module's docstring)."""
    if not _known_hydra():
        yield
        return
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    get_mode, load = Hydra.get_mode, ConfigLoaderImpl.load_configuration
    # The composition `get_mode` made, for the one that follows it: ((config name, overrides),
    # the config or the exception composing it raised).
    earlier: list[tuple[tuple[str | None, list[str]], Any]] = []

    def get_mode_once(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        try:
            parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        except Exception:  # noqa: BLE001 - the composition in `run` reports it
            return get_mode(self, config_name, overrides)
        if any(o.is_sweep_override() for o in parsed):
            return get_mode(self, config_name, overrides)
        key = (config_name, list(overrides))
        try:
            cfg = self.config_loader.load_configuration(
                config_name=config_name,
                overrides=list(overrides),
                run_mode=RunMode.RUN,
                validate_sweep_overrides=False,
            )
        except Exception as err:  # noqa: BLE001 - Hydra's get_mode turns any into None too
            if str(err).startswith(_MISSING_DEFAULT):
                return get_mode(self, config_name, overrides)
            # Composing the other way fails at the same place: `run` raises this again.
            earlier[:] = [(key, err)]
            return None
        earlier[:] = [(key, cfg)]
        return cfg.hydra.mode

    def load_once(self: Any, config_name: str | None, overrides: list[str], *args, **kwargs):
        taken, earlier[:] = earlier[:], []  # used once, by the composition right after
        for (name, before), outcome in taken:
            added = overrides[len(before) :]
            same = name == config_name and overrides[: len(before)] == before
            if same and all(a.startswith("hydra.mode=") for a in added):
                if isinstance(outcome, BaseException):
                    raise outcome
                _apply(outcome, added)
                return outcome
        return load(self, config_name, overrides, *args, **kwargs)

    Hydra.get_mode = get_mode_once  # type: ignore[method-assign]
    ConfigLoaderImpl.load_configuration = load_once  # type: ignore[method-assign]
    try:
        with light_composition():
            yield
    finally:
        Hydra.get_mode = get_mode  # type: ignore[method-assign]
        ConfigLoaderImpl.load_configuration = load  # type: ignore[method-assign]


def _apply(cfg: Any, overrides: list[str]) -> None:
    """Hydra's own steps for a Hydra override given after the others."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides=overrides)
    ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
    for override in parsed:
        cfg.hydra.overrides.hydra.append(override.input_line)
