"""Free memory and sizes: one line, before anything is allocated, when something cannot fit.

A size off by orders of magnitude (a width of 10^9, a file's header declaring a huge array) is
one ZooError in a moment instead of an out-of-memory crash minutes later. Free of JAX imports
(`nbytes` imports JAX only when called), so file readers check a declared size before loading.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def human(nbytes: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as disk and memory sizes are usually quoted)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(nbytes) < 1000 or unit == "PB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_available() -> int:
    """Bytes this process may still allocate: the kernel's MemAvailable, or less where a cgroup
    (a container, a SLURM job) limits the process to less."""
    free = []
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if found:
            free.append(int(found.group(1)) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            free.append(max(limit - usage, 0))
    if not free:  # not Linux: physical pages free
        import os

        try:
            free.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: do not refuse
    return min(free)


def require_memory(nbytes: int, what: str) -> None:
    """Raise a ZooError when `nbytes` of host memory for `what` exceed what is free."""
    free = host_available()
    if nbytes > free:
        raise ZooError(
            f"{what} needs {human(nbytes)} of memory, but this machine has {human(free)} free"
        )


def nbytes(tree: Any) -> int:
    """Bytes of every array leaf of a pytree (arrays or ShapeDtypeStructs), exactly."""
    import jax
    import numpy as np

    return sum(
        math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
        for leaf in jax.tree.leaves(tree)
        if hasattr(leaf, "shape")
    )
