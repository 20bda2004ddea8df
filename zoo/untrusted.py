"""Reading the files of a user's directory as if hostile: a run's `config.yaml` and `.hydra/*.yaml`,
a pretrained `config.json`, a safetensors header.

Regular files only (a FIFO cannot hang the open, a symlink to `/dev/zero` is refused), their size
bounded before they are read, JSON and YAML nesting bounded, and YAML aliases refused: an alias is
a reference, so a few hundred bytes of them expand into billions of nodes when the document is
turned into a config, and nothing the zoo or Hydra writes holds one. Each problem is one ZooError
line. No JAX imports.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import ZooError

MAX_YAML_BYTES = 1 << 20  # a run's config.yaml or hydra.yaml is a few KiB
MAX_YAML_DEPTH = 32  # mappings and lists within one another; Hydra's own files nest 6 deep


def open_regular(path: Path, missing: str = "no such file") -> BinaryIO:
    """`path` opened for reading, if it is a regular file (a symlink to one is fine).

    Opened non-blocking, so a FIFO cannot hang the open, and checked on the open descriptor, so
    what is checked is what is read. `missing` is the message when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ZooError(f"{path}: {missing}") from None
    except OSError as err:
        raise ZooError(f"{path}: cannot open ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ZooError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, limit: int, what: str, missing: str = "no such file") -> bytes:
    """The bytes of the regular file `path`; a ZooError if it holds more than `limit`."""
    with open_regular(path, missing) as file:
        try:
            data = file.read(limit + 1)
        except OSError as err:
            raise ZooError(f"{path}: cannot read ({err.strerror})") from None
    if len(data) > limit:
        raise ZooError(f"{path}: larger than {limit} bytes; not a {what}")
    return data


def parse_json(data: bytes, path: Path, what: str, max_items: int, max_depth: int) -> Any:
    """JSON from `data`, with its nesting and the entries of each list or object bounded."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ZooError(f"{path}: nested deeper than {max_depth} levels") from None
    except ValueError as err:  # bad JSON or UTF-8, or an integer of over 4300 digits
        raise ZooError(f"{path}: unreadable {what} ({err})") from None
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise ZooError(f"{path}: nested deeper than {max_depth} levels")
            if len(node) > max_items:
                kind = "an object" if isinstance(node, dict) else "a list"
                raise ZooError(f"{path}: {kind} of {len(node)} entries (at most {max_items})")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return value


def load_yaml(
    path: str | os.PathLike, what: str = "config", missing: str = "no such file"
) -> DictConfig | ListConfig:
    """The YAML file `path` as OmegaConf reads it (`OmegaConf.load`), once its size, nesting and
    aliases are checked: a ZooError names the first problem."""
    path = Path(path)
    data = read_bounded(path, MAX_YAML_BYTES, what, missing)
    try:
        text = data.decode("utf-8")
        _check_events(text, path)
        loaded = OmegaConf.load(io.StringIO(text))
    except ZooError:
        raise
    except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        gist = " ".join(str(err).split())[:160]
        raise ZooError(f"{path}: unreadable {what} ({gist})") from None
    return loaded


def _check_events(text: str, path: Path) -> None:
    """Walk the YAML event stream (the parser keeps its own stack: nesting costs no recursion)
    and stop at the first alias or at nesting deeper than MAX_YAML_DEPTH."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ZooError(
                f"{path}: holds a YAML alias (*{event.anchor}); aliases are not read "
                "(nothing the zoo writes has one)"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ZooError(f"{path}: nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
