"""data=text: a language-modelling data set from text files, tokenized once into a memory map.

The texts (`data.path`: a file, a directory of them or a glob; by default the documentation
topics every Python ships in `pydoc_data`) are tokenized once into a cached token file
(zoo.data.tokens). The last `data.val_fraction` of the token stream is the validation split, cut
into consecutive windows held on the device; training windows start anywhere in the rest and are
read from the memory map on the host, `TokenWindows.windows(step)` being a function of
`(data.seed, step)` alone, so a resumed run sees exactly the windows an uninterrupted one would.
Each window holds `data.length + 1` tokens: the inputs and, shifted by one, the next-token
targets.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from zoo.data.dataset import Dataset
from zoo.data.tokens import Source, TokenFile, Tokenizer, tokenize
from zoo.errors import ZooError

log = logging.getLogger(__name__)

BUNDLED = "pydoc_data"  # what the log calls the default corpus


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/zoo/tokens`, by default `~/.cache/zoo/tokens`."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache_home) / "zoo" / "tokens"


def bundled_corpus() -> Source:
    """The standard library's documentation topics (`pydoc_data.topics`), one text."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    return Source(f"{BUNDLED} (Python's documentation topics)", text=text.encode("utf-8"))


def find_sources(path: str | None) -> list[Source]:
    """The texts `data.path` names, in a fixed order: the file; the directory's regular files
    (recursively, hidden ones left out) or the glob's matches, sorted by path."""
    if path is None:
        return [bundled_corpus()]
    given = Path(path).expanduser()
    if given.is_file():
        files = [given]
    elif given.is_dir():
        files = sorted(
            p
            for p in given.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(given).parts)
        )
        if not files:
            raise ZooError(f"data.path={path}: the directory holds no text files")
    elif given.exists():
        raise ZooError(f"data.path={path}: not a regular file or a directory")
    elif glob.has_magic(path):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True))
        files = [p for p in files if p.is_file()]
        if not files:
            raise ZooError(f"data.path={path}: the pattern matches no files")
    else:
        raise ZooError(f"data.path={path}: no such file or directory")
    sources = [Source(str(p), path=p) for p in files]
    if all(source.size == 0 for source in sources):
        what = "the file is empty" if len(files) == 1 else f"all {len(files)} files are empty"
        raise ZooError(f"data.path={path}: {what}; there is no text to train on")
    return [source for source in sources if source.size]


class TokenWindows:
    """The training windows of a token stream: `windows(step)` draws each step's from
    `(seed, step)` alone and reads them from the memory map."""

    def __init__(
        self, tokens: TokenFile, end: int, length: int, seed: int, tokenizer: Tokenizer
    ) -> None:
        self.tokens, self.end, self.length, self.seed = tokens, end, length, seed
        self.tokenizer = tokenizer  # a run writes its tokenizer.json, for zoo-generate
        self._map: np.ndarray | None = None

    @property
    def count(self) -> int:
        """How many distinct windows the training split holds (one per start)."""
        return self.end - self.length

    def starts(self, step: int, shape: tuple[int, ...]) -> np.ndarray:
        """The start of each window of step `step`, uniform over the training split."""
        return np.random.default_rng((self.seed, step)).integers(0, self.count, shape)

    def windows(self, first: int, last: int, shape: tuple[int, ...]) -> np.ndarray:
        """The windows of steps `first` to `last - 1`: `(last - first, *shape, length + 1)`
        tokens, in the token file's dtype."""
        if self._map is None:
            self._map = self.tokens.tokens()
        offsets = np.arange(self.length + 1)
        starts = np.stack([self.starts(step, shape) for step in range(first, last)])
        return self._map[starts[..., None] + offsets]


def text(cfg: Any, model_cfg: Any) -> Dataset:
    """The token windows of `cfg.path`'s texts under `cfg.tokenizer` (see the module's doc)."""
    sources = find_sources(cfg.path)
    tokenizer = Tokenizer(cfg.tokenizer)
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    token_file = tokenize(sources, tokenizer, cache_dir)
    length, count = int(cfg.length), token_file.count
    n_val = max(length + 1, round(count * cfg.val_fraction))
    if count - n_val < length + 1:
        raise ZooError(
            f"data.path={cfg.path}: {count:,} tokens are too few for data.length={length}: "
            f"training and validation need at least {length + 1} each (data.val_fraction="
            f"{cfg.val_fraction} holds out {n_val:,})"
        )
    end = count - n_val
    n_windows = min((n_val - 1) // length, cfg.val_windows)
    held = np.asarray(token_file.tokens()[end : end + n_windows * length + 1], dtype=np.int32)
    starts = np.arange(n_windows) * length
    val = held[starts[:, None] + np.arange(length + 1)]
    log.info(
        "%s: %d tokens (vocabulary %d); %d for training, the last %d held out (%d windows of "
        "%d scored)",
        sources[0].name if len(sources) == 1 else f"{len(sources)} files",
        count,
        tokenizer.vocab_size,
        end,
        n_val,
        n_windows,
        length,
    )
    empty = jnp.zeros((0, length), jnp.int32)  # training windows come from `stream`
    return Dataset(
        empty,
        empty,
        jnp.asarray(val[:, :-1]),
        jnp.asarray(val[:, 1:]),
        task="classification",
        num_classes=tokenizer.vocab_size,
        vocab_size=tokenizer.vocab_size,
        stream=TokenWindows(token_file, end, length, cfg.seed, tokenizer),
    )
