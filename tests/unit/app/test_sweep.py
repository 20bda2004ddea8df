"""A sweep's summary and job records, in-process: jobs in numeric order, unfinished jobs, user
errors and unexpected errors recorded per job."""

from __future__ import annotations

import pytest
from conftest import CONFIGS
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from zoo.app.job_status import read_status
from zoo.app.sweep import SweepSummary, collect, format_table, summarize


def write_job(job_dir, overrides, metrics_lines):
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics_lines is not None:
        (job_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in metrics_lines))


def test_summary_orders_jobs_numerically_and_tolerates_unfinished_jobs(tmp_path):
    for num in range(11):
        write_job(tmp_path / str(num), [f"seed={num}"], ['{"step": 5, "train_loss": 0.5}'])
    # job 3 died while writing its second record; job 4 never wrote any
    (tmp_path / "3" / "metrics.jsonl").write_text('{"step": 5, "train_loss": 0.25}\n{"step": 1')
    (tmp_path / "4" / "metrics.jsonl").unlink()
    rows = summarize(tmp_path)
    assert [r["job"] for r in rows] == [str(n) for n in range(11)]
    assert rows[3] == {"job": "3", "seed": "3", "step": 5, "train_loss": 0.25}
    assert rows[4] == {"job": "4", "seed": "4"}
    table = (tmp_path / "summary.csv").read_text().splitlines()
    assert table[0] == "job,seed,step,train_loss"
    assert table[5] == "4,4,,"
    assert collect(tmp_path) == rows
    text = format_table(rows).splitlines()
    assert text[0].split() == ["job", "seed", "step", "train_loss"]
    assert text[11].split() == ["10", "10", "5", "0.5"]


def hydra_settings():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", return_hydra_config=True).hydra


def test_sweep_summary_callback_and_memory_setting_are_configured(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    hydra = hydra_settings()
    assert hydra.callbacks.sweep_summary._target_ == "zoo.app.sweep.SweepSummary"
    assert hydra.job.env_set.XLA_PYTHON_CLIENT_PREALLOCATE == "false"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")  # the user's own choice wins
    assert hydra_settings().job.env_set.XLA_PYTHON_CLIENT_PREALLOCATE == "true"


def job_end_config(mode, output_dir, subdir):
    hydra = {"mode": mode, "runtime": {"output_dir": str(output_dir)}, "sweep": {"subdir": subdir}}
    return OmegaConf.create({"hydra": hydra})


def test_each_sweep_job_refreshes_the_summary_and_a_single_run_writes_none(tmp_path):
    write_job(tmp_path / "run", ["seed=1"], ['{"step": 5, "train_loss": 0.5}'])
    SweepSummary().on_job_end(job_end_config(RunMode.RUN, tmp_path / "run", "0"), job_return=None)
    assert not list(tmp_path.rglob("summary.csv"))
    sweep = tmp_path / "sweep"
    write_job(sweep / "lr" / "1", ["optim.lr=1"], ['{"step": 5, "train_loss": 0.5}'])
    config = job_end_config(RunMode.MULTIRUN, sweep / "lr" / "1", "lr/1")
    SweepSummary().on_job_end(config, job_return=None)
    assert (sweep / "summary.csv").read_text() == "job,optim.lr,step,train_loss\nlr/1,1,5,0.5\n"


def test_a_job_of_a_sweep_records_a_user_error_and_returns_no_value(tmp_path, capsys):
    from zoo.app.job_status import read_status, run_recorded
    from zoo.errors import ZooError

    def bad():
        raise ZooError("model.depth=0 is invalid: must be an integer >= 1")

    assert run_recorded(tmp_path, lambda: 0.5) == 0.5
    assert read_status(tmp_path) == {"status": "ok"}
    assert run_recorded(tmp_path, bad) is None  # the Optuna sweeper records a failed trial
    assert read_status(tmp_path) == {
        "status": "failed",
        "error": "model.depth=0 is invalid: must be an integer >= 1",
    }
    assert capsys.readouterr().err == "error: model.depth=0 is invalid: must be an integer >= 1\n"


def test_an_unexpected_error_fails_its_job_with_one_line_and_keeps_the_traceback(tmp_path, capsys):
    from zoo.app.job_status import TRACEBACK, run_recorded
    from zoo.errors import RunStopped

    def bug():
        raise KeyError("no such thing")

    assert run_recorded(tmp_path, bug) is None
    kept = tmp_path / TRACEBACK
    line = f"unexpected KeyError: 'no such thing' (traceback: {kept})"
    assert read_status(tmp_path) == {"status": "failed", "error": line}
    assert capsys.readouterr().err == f"error: {line}\n"
    assert kept.read_text().startswith("Traceback (most recent call last):")
    assert kept.read_text().endswith("KeyError: 'no such thing'\n")

    def stopped():
        raise RunStopped("SIGTERM at step 5: ...")

    with pytest.raises(RunStopped):  # a stop request ends the sweep: not a failed job
        run_recorded(tmp_path / "other", stopped)
