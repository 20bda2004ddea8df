"""The run directory's Hydra callback: a directory in use or holding results is refused before
Hydra writes into it; sweep directories; unique default names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from zoo.app import run_directory


def hydra_config(*overrides: str):
    """The config with its `hydra` node, as Hydra hands it to callbacks."""
    from conftest import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", list(overrides), return_hydra_config=True)


def run_start(cfg) -> None:
    """RunDirectory.on_run_start, then release what it claimed (the test process lives on)."""
    callback = run_directory.RunDirectory()
    try:
        callback.on_run_start(cfg)
    finally:
        callback.on_run_end(cfg)
        HydraConfig.instance().cfg = None  # as outside a Hydra app


def test_hydra_is_stopped_before_it_writes_into_a_directory_in_use_or_holding_results(
    tmp_path, capsys
):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit) as exit_:
        run_start(hydra_config(f"hydra.run.dir={tmp_path}", "seed=2"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: hydra.run.dir={tmp_path} holds an earlier run's results (")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / ".hydra").exists()  # Hydra never got to write its config
    run_start(hydra_config(f"hydra.run.dir={tmp_path}", "trainer.resume=true"))

    (tmp_path / "a_file").write_text("")
    for bad, problem in [("a_file", "is a file"), ("a_file/run", "lies under a file")]:
        with pytest.raises(SystemExit):
            run_start(hydra_config(f"hydra.run.dir={tmp_path / bad}"))
        assert capsys.readouterr().err == (
            f"error: hydra.run.dir={tmp_path / bad}: {problem}, not a directory\n"
        )


def test_an_unwritable_run_directory_is_one_line(tmp_path, monkeypatch, capsys):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(SystemExit):
        run_start(hydra_config(f"hydra.run.dir={tmp_path / 'run'}"))
    assert capsys.readouterr().err == (
        f"error: hydra.run.dir={tmp_path / 'run'}: cannot create it (Permission denied)\n"
    )


def test_a_sweep_into_a_directory_with_an_earlier_sweeps_results_is_refused(tmp_path, capsys):
    (tmp_path / "3" / "model").mkdir(parents=True)
    callback = run_directory.RunDirectory()
    with pytest.raises(SystemExit):
        callback.on_multirun_start(hydra_config(f"hydra.sweep.dir={tmp_path}"))
    callback.on_multirun_end(None)
    assert "earlier sweep's results (3/model/): resume its jobs" in capsys.readouterr().err


def test_default_run_directories_differ_for_runs_started_in_the_same_second():
    first, second = (str(hydra_config().hydra.run.dir) for _ in range(2))
    assert first != second
    assert first.endswith(f"-{os.getpid()}") and second.endswith(f"-{os.getpid()}")
    assert str(hydra_config().hydra.sweep.dir).startswith("multirun/")
