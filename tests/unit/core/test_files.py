"""A run's files follow the umask."""

from __future__ import annotations

import os

import pytest

from zoo.files import write_atomically
from zoo.training import run_dir as rundir


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_follow_the_umask(tmp_path, umask):
    from flax import nnx

    import zoo

    previous = os.umask(umask)
    try:
        write_atomically(tmp_path / "metrics.jsonl", "")
        zoo.save_pretrained(
            zoo.create_model("deep_nested", in_features=2, hidden=3, rngs=nnx.Rngs(0)),
            tmp_path / "model",
        )
        with rundir.owned(tmp_path, resume=True):
            pass
    finally:
        os.umask(previous)
    modes = {
        p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")
    }
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert modes == {
        "metrics.jsonl": file_mode,
        "model": dir_mode,
        "model/model.safetensors": file_mode,
        "model/config.json": file_mode,
        ".lock": file_mode,
    }
