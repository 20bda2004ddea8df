"""Writing a run's files whole and with the permissions the user's umask asks for.

A reader sees the old file or the new one, never half of either. `tempfile.mkstemp` and `mkdtemp`
create 0600 files and 0700 directories whatever the umask, and so does safetensors' `save_file`;
on a shared cluster directory that hides a run's results from the user's group. Everything
written through here ends up as `open()` or `mkdir()` would have made it. No JAX imports.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere by setting and restoring it."""
    try:
        status = Path("/proc/self/status").read_text()
        found = re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE)
        if found:
            return int(found.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give `path` the mode `open()` (files) or `mkdir()` (directories) would have given it."""
    full = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, full & ~current_umask())


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; when the block succeeds, give it the umask's
    mode and rename it onto `path`. On an error it is removed and `path` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        follow_umask(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text`, whole."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def staging_directory(beside: Path) -> Path:
    """A new empty directory next to `beside`, to fill and then rename into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", dir=beside.parent))
    follow_umask(staging)
    return staging


@contextlib.contextmanager
def replacing_directory(directory: Path) -> Iterator[Path]:
    """Yield a staging directory beside `directory` to fill; when the block succeeds, it takes
    `directory`'s place (the old one, if any, is set aside first and removed last). On an error
    the staging directory is removed and `directory` is left as it was."""
    staging = staging_directory(directory)
    old = staging.with_name(staging.name + ".old")
    try:
        yield staging
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not directory.exists():
            old.rename(directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
