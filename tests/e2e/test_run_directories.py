"""A run directory locked by a live process (another interpreter holding the lock) is refused; a
dead one's lock never blocks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zoo.errors import ZooError
from zoo.training import run_dir as rundir

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on elsewhere".encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_a_directory_locked_by_a_live_process_is_refused_and_a_dead_ones_lock_never_blocks(
    tmp_path,
):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ZooError) as err:
            rundir.acquire(tmp_path)
        assert str(err.value) == (
            f"hydra.run.dir={tmp_path} is in use by another run (pid {holder.pid} on elsewhere): "
            "wait for it to end, or choose another hydra.run.dir"
        )
    finally:
        holder.kill()  # dies holding the lock: the kernel drops it
        holder.wait()
    rundir.acquire(tmp_path)
    rundir.acquire(tmp_path)  # the same process again: counted, not refused
    assert (tmp_path / ".lock").read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"
    rundir.release(tmp_path)
    rundir.release(tmp_path)
    assert not rundir._held
