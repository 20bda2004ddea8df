"""Run directories owned by one run: shared by a run's processes, refused to another run, earlier
results never overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import compose_config

from zoo.errors import ZooError
from zoo.training import run as training
from zoo.training import run_dir as rundir

SHORT = [
    "trainer.steps=40",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=20",
]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_processes_of_one_run_share_a_directory_but_two_runs_do_not(tmp_path):
    shared = tmp_path / "ckpt"
    with (
        rundir.owned(tmp_path / "p0", shared, resume=False, process_index=0),
        rundir.owned(tmp_path / "p0", shared, resume=False, process_index=1),
    ):
        assert sorted(p.name for p in shared.iterdir()) == [".lock.0", ".lock.1"]
        assert sorted(p.name for p in (tmp_path / "p0").iterdir()) == [".lock", ".lock.1"]
        fd = os.open(shared / ".lock.1", os.O_RDWR)  # another run's process 1
        try:
            import fcntl

            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not rundir._held


def test_a_checkpoint_directory_in_another_runs_directory_is_refused_not_in_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    own, other, lonely = sweep / "0", sweep / "1", tmp_path / "lonely"
    for directory, marks in [(sweep, ["multirun.yaml"]), (own, [".hydra"]), (other, [".hydra"])]:
        directory.mkdir(parents=True, exist_ok=True)
        for name in [".lock", *marks]:
            (directory / name).touch()
    lonely.mkdir()
    (lonely / ".lock").touch()  # a lock file alone is no run's
    for allowed in (own / "checkpoints", own, sweep / "shared", tmp_path / "x", lonely / "ckpt"):
        rundir.refuse_anothers_directory(allowed, own)
    for refused in (other / "checkpoints", other, other / "checkpoints" / "20" / "deeper"):
        with pytest.raises(ZooError, match=f"lies in the directory of another run \\({other}\\)"):
            rundir.refuse_anothers_directory(refused, own)


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda d: (d / "metrics.jsonl").write_text(""), "metrics.jsonl"),
        (lambda d: (d / "model").mkdir(), "model/"),
        (lambda d: (d / "best").mkdir(), "best/"),
        (lambda d: (d / "checkpoints" / "20").mkdir(parents=True), "checkpoints/"),
    ],
    ids=["metrics", "model", "best", "checkpoints"],
)
def test_any_earlier_result_is_refused_without_resume(tmp_path, make, found):
    make(tmp_path)
    refused = f"holds an earlier run's results \\({found}\\): continue"
    with pytest.raises(ZooError, match=refused), rundir.owned(tmp_path, resume=False):
        pass
    with rundir.owned(tmp_path, resume=True):  # asked for: allowed
        pass
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / ".lock.0").touch()
    assert rundir.earlier_results(tmp_path) == [found]  # a checkpoints/ of locks is no result


def test_training_again_with_the_checkpoints_elsewhere_or_deleted_never_overwrites(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 5, "train_loss": 1.0}\n')
    (tmp_path / "model").mkdir()
    cfg = compose_config("train", [*SHORT, f"trainer.ckpt_dir={tmp_path / 'elsewhere'}"])
    with pytest.raises(ZooError, match=r"\(metrics.jsonl, model/\): continue that run with"):
        training.train(cfg, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 5, "train_loss": 1.0}\n'
    assert list((tmp_path / "model").iterdir()) == []
