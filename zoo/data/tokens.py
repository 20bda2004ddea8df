"""Text tokenized once into a token file, kept in a cache and read back as a memory map.

A token file is a 64-byte header (magic, the cache key, the token width, the token count, the
vocabulary size) followed by the tokens, uint16 when the vocabulary fits, else uint32 (as
nanoGPT's `train.bin`). Its name and the key in its header are a hash of the texts' contents and
of the tokenizer, so a changed file or tokenizer makes a new one; a file whose header, key or size
does not match is rebuilt, never trusted. It is written to a temporary file beside its place and
renamed into it whole: a killed run leaves no half file under the name, and processes that build
the same file at once each rename a whole one.

Tokenizing streams: each text is read in blocks cut at a line end, decoded as UTF-8 (a file that
is not names itself and its byte offset), tokenized (Hugging Face `tokenizers`' `encode_batch`
spreads a block over every core) and appended to the file, so memory stays bounded by the block
whatever the corpus size. No JAX imports.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from zoo.errors import ZooError
from zoo.files import replacing
from zoo.untrusted import open_regular, read_bounded

log = logging.getLogger(__name__)

BYTES = "bytes"  # data.tokenizer for the 256-symbol byte tokenizer
TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENIZER_BYTES = 256 << 20  # a large vocabulary's tokenizer.json is tens of MB
BLOCK_BYTES = 1 << 22  # text tokenized at a time: bounds the memory whatever the corpus size
PIECES = 64  # a block is cut into this many pieces at line ends for encode_batch's threads
MAGIC = b"ZOOTOK1\0"
HEADER = struct.Struct("<8s32sBxxxxxxxQQ")  # magic, key, itemsize, count, vocab: 64 bytes
FORMAT_VERSION = b"zoo token file 1"  # part of every key: a new layout makes new files


@dataclass(frozen=True)
class Source:
    """One text of a corpus: a file, or text held in memory (the bundled corpus)."""

    name: str  # what an error names: the file's path
    path: Path | None = None
    text: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.text) if self.text is not None else self.path.stat().st_size

    def blocks(self, size: int = BLOCK_BYTES) -> Iterator[bytes]:
        if self.text is not None:
            for start in range(0, len(self.text), size):
                yield self.text[start : start + size]
            return
        with open_regular(self.path) as file:
            while block := file.read(size):
                yield block


class Tokenizer:
    """`bytes` (each UTF-8 byte a token, vocabulary 256) or a Hugging Face tokenizer.json."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.hf: Any = None
        if spec == BYTES:
            self.vocab_size, self.identity = 256, b"bytes"
            return
        path = tokenizer_file(spec)
        data = read_bounded(path, MAX_TOKENIZER_BYTES, "tokenizer.json")
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise ZooError(
                f"data.tokenizer={spec}: Hugging Face's tokenizers is not installed "
                "(pip install 'zoo[text]')"
            ) from None
        try:
            self.hf = HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # the Rust parser's errors come as plain Exceptions
            gist = " ".join(str(err).split())[:160]
            raise ZooError(f"{path}: not a readable tokenizer.json ({gist})") from None
        self.vocab_size = int(self.hf.get_vocab_size(with_added_tokens=True))
        self.identity = hashlib.sha256(data).digest()

    def to_json(self) -> str:
        """This tokenizer as a tokenizer.json the `tokenizers` library (and transformers) reads:
        the file given, or for `bytes` a byte-level one whose ids are the bytes themselves."""
        if self.hf is not None:
            return self.hf.to_str()
        return json.dumps(byte_tokenizer_json(), ensure_ascii=False)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.vocab_size <= 1 << 16 else np.uint32)

    def encode(self, text: str) -> np.ndarray:
        """The token ids of `text` in `self.dtype`."""
        if self.hf is None:
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(self.dtype)
        pieces = split_lines(text, PIECES)
        encoded = self.hf.encode_batch_fast(pieces, add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=self.dtype) for e in encoded]
        return np.concatenate(ids) if ids else np.zeros(0, self.dtype)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (special tokens left out; bytes not UTF-8 shown as U+FFFD)."""
        ids = [int(i) for i in ids]
        if self.hf is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self.hf.decode(ids)


def byte_tokenizer_json() -> dict[str, Any]:
    """A tokenizer.json whose token ids are the UTF-8 bytes of the text: GPT-2's byte-level
    pre-tokenizer and decoder around a vocabulary of the 256 bytes and no merges."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    chars = dict(
        zip(printable + others, printable + [256 + i for i in range(len(others))], strict=True)
    )
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {chr(chars[b]): b for b in range(256)},
            "merges": [],
        },
    }


def tokenizer_file(spec: str) -> Path:
    """The tokenizer.json that `data.tokenizer` names: the file, or the one in the directory."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / TOKENIZER_FILE).is_file():
            raise ZooError(
                f"data.tokenizer={spec}: the directory holds no {TOKENIZER_FILE} (give `bytes`, "
                f"a {TOKENIZER_FILE} or a directory holding one)"
            )
        return path / TOKENIZER_FILE
    if not path.exists():
        raise ZooError(
            f"data.tokenizer={spec}: no such file or directory (give `bytes`, a "
            f"{TOKENIZER_FILE} or a directory holding one)"
        )
    return path


def split_lines(text: str, pieces: int) -> list[str]:
    """`text` cut into about `pieces` parts at line ends (no cut inside a line)."""
    if pieces <= 1 or len(text) < 2 * pieces:
        return [text] if text else []
    parts, start, step = [], 0, len(text) // pieces
    while start < len(text):
        cut = text.find("\n", start + step)
        end = len(text) if cut < 0 else cut + 1
        parts.append(text[start:end])
        start = end
    return parts


def texts(sources: list[Source], block: int = BLOCK_BYTES) -> Iterator[tuple[str, int]]:
    """Each source's text as decoded blocks cut after a line end where there is one, with the
    bytes each covers; a ZooError naming the file and byte offset at the first invalid UTF-8."""
    for source in sources:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, pending = 0, ""
        for raw in source.blocks(block):
            try:
                text = decoder.decode(raw)
            except UnicodeDecodeError as err:
                raise ZooError(
                    f"{source.name}: not UTF-8 text (byte {offset + err.start:,} is "
                    f"{raw[err.start : err.start + 1].hex()}); convert it or leave it out"
                ) from None
            offset += len(raw)
            text, cut = pending + text, None
            cut = text.rfind("\n") + 1 or len(text)
            yield text[:cut], len(raw)
            pending = text[cut:]
        try:
            tail = pending + decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ZooError(f"{source.name}: not UTF-8 text (it ends inside a character)") from None
        if tail:
            yield tail, 0


def cache_key(sources: list[Source], tokenizer: Tokenizer) -> bytes:
    """A hash of the texts' contents (in order) and of the tokenizer."""
    digest = hashlib.blake2b(FORMAT_VERSION + tokenizer.identity, digest_size=32)
    for source in sources:
        contents = hashlib.blake2b(digest_size=32)
        for raw in source.blocks():
            contents.update(raw)
        digest.update(contents.digest())
    return digest.digest()


def read_header(path: Path) -> tuple[bytes, int, int, int] | None:
    """(key, itemsize, count, vocab) from a token file whose size matches its header; else None."""
    try:
        with open(path, "rb") as file:
            raw = file.read(HEADER.size)
        size = path.stat().st_size
    except OSError:
        return None
    if len(raw) != HEADER.size:
        return None
    magic, key, itemsize, count, vocab = HEADER.unpack(raw)
    if magic != MAGIC or itemsize not in (2, 4) or size != HEADER.size + count * itemsize:
        return None
    return key, itemsize, count, vocab


@dataclass(frozen=True)
class TokenFile:
    """A complete token file: where it is, its tokens' dtype, count and vocabulary."""

    path: Path
    dtype: np.dtype
    count: int
    vocab_size: int

    def tokens(self) -> np.ndarray:
        """The tokens as a read-only memory map (nothing is read until indexed)."""
        return np.memmap(self.path, self.dtype, mode="r", offset=HEADER.size, shape=(self.count,))


def tokenize(sources: list[Source], tokenizer: Tokenizer, cache_dir: Path) -> TokenFile:
    """The token file of `sources` under `tokenizer` in `cache_dir`: reused when complete and of
    the same key, else written (streaming, with a progress bar) and renamed into place."""
    key = cache_key(sources, tokenizer)
    path = cache_dir / f"{key.hex()[:32]}.tokens"
    found = read_header(path) if path.exists() else None
    if found is not None and found[0] == key and found[1] == tokenizer.dtype.itemsize:
        log.info("tokens of %s: %s (cached: %d tokens)", describe(sources), path, found[2])
        return TokenFile(path, tokenizer.dtype, found[2], found[3])
    if path.exists():
        log.warning("%s: incomplete or not matching its texts; tokenizing again", path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ZooError(f"data.cache_dir={cache_dir}: cannot create it ({err.strerror})") from None
    total = sum(source.size for source in sources)
    count = 0
    try:
        with replacing(path) as tmp, open(tmp, "wb") as out:
            out.write(b"\0" * HEADER.size)  # written last: a file cut short has no valid header
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenizing", disable=None)
            with bar:
                for text, nbytes in texts(sources):
                    ids = tokenizer.encode(text)
                    out.write(ids.tobytes())
                    count += len(ids)
                    bar.update(nbytes)
            out.seek(0)
            header = HEADER.pack(MAGIC, key, tokenizer.dtype.itemsize, count, tokenizer.vocab_size)
            out.write(header)
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:  # a full disk, a directory that is not writable
        raise ZooError(f"data.cache_dir={cache_dir}: cannot write the tokens ({err})") from None
    log.info("tokens of %s: %s (%d tokens, %s)", describe(sources), path, count, tokenizer.dtype)
    return TokenFile(path, tokenizer.dtype, count, tokenizer.vocab_size)


def describe(sources: list[Source]) -> str:
    if len(sources) == 1:
        return sources[0].name
    return f"{len(sources)} files ({sources[0].name}, ...)"
