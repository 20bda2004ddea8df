"""Sweeps (`train.py -m`): a directory per job, and a table of each job's overrides and metrics."""

import contextlib
import csv
import gc
import io
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, run_script
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from zoo import cli, rundir
from zoo.job_status import read_status
from zoo.plots import _job_labels
from zoo.sweep import SweepSummary, collect, format_table, summarize

pytestmark = pytest.mark.slow  # subprocesses, venvs, signals: make test, not test-fast


def last_metrics(job_dir):
    return json.loads((job_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_submitit_local_sweep_leaves_a_dir_per_job_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "model.depth=1,2",
        "optim.lr=1e-3",
        "trainer.steps=20",
        "trainer.log_every=10",
        "trainer.eval_every=10",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    # submitit ran each job as its own process and kept its logs
    assert len(list((sweep / ".submitit").glob("*/*_0_log.out"))) == 2
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == jobs
    assert [(r["model.depth"], r["optim.lr"]) for r in rows] == [("1", "0.001"), ("2", "0.001")]
    for row in rows:
        final = last_metrics(sweep / row["job"])
        assert final["step"] == 20
        assert float(row["val_loss"]) == final["val_loss"]  # full precision in the CSV
        assert float(row["train_loss"]) == final["train_loss"]
        assert (sweep / row["job"] / "model" / "model.safetensors").is_file()
    assert rows[0]["val_loss"] != rows[1]["val_loss"]
    printed = result.stdout[result.stdout.index("sweep summary") :].splitlines()
    assert printed[1].split() == list(rows[0])
    assert printed[3].split()[:3] == ["1", "2", "0.001"]
    assert f"{float(rows[1]['val_loss']):.6g}" in printed[3]
    assert f"sweep plot: {sweep / 'sweep.png'}" in result.stdout and (sweep / "sweep.png").is_file()


def sweep_in_process(sweep_dir: Path, *overrides: str) -> tuple[object, str]:
    """`zoo-train -m <overrides> hydra.sweep.dir=<sweep_dir>` in this process (what zoo-train
    runs short of ending the process, so a test can patch it): the exit code and stderr.
    Hydra's logging is left as it is."""
    argv = ["train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    argv += ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    err = io.StringIO()
    old_argv, sys.argv = sys.argv, argv
    full_errors = os.environ.pop("HYDRA_FULL_ERROR", None)  # the one-line behaviour is tested
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.train_app()
    finally:
        sys.argv = old_argv
        if full_errors is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_errors
        gc.unfreeze()  # the app freezes the heap for a process about to end
        rundir.release(Path(sweep_dir), rundir.LOCK)  # held still by a sweep that stopped
    return code, err.getvalue()


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


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
    assert hydra.callbacks.sweep_summary._target_ == "zoo.sweep.SweepSummary"
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


def test_a_sweep_goes_on_past_a_diverged_job_and_its_exit_status_says_so(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "optim=sgd",
        "optim.lr=0.01,1e30,0.05",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.checkpoints=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["optim.lr"], r["status"]) for r in rows] == [
        ("0.01", "ok"),
        ("1e+30", "diverged"),
        ("0.05", "ok"),
    ]
    assert rows[1]["error"].startswith("train_loss became non-finite at step ")
    assert rows[1]["val_loss"] == "" and rows[2]["val_loss"] != ""  # nothing logged, then on
    assert float(rows[2]["val_loss"]) == last_metrics(sweep / "2")["val_loss"]
    assert (sweep / "2" / "model" / "model.safetensors").is_file()  # the job after it finished
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0] == f"error: {rows[1]['error']}"  # the job's own line, as it happened
    assert errors[-1] == "error: 1 of 3 jobs failed: 1 (diverged)"
    assert (sweep / "sweep.png").is_file()
    # the plot's legend: what the jobs vary, and which one diverged
    assert _job_labels([sweep / r["job"] for r in rows]) == [
        "optim.lr=0.01",
        "optim.lr=1e+30",
        "optim.lr=0.05",
    ]


def test_a_job_of_a_sweep_records_a_user_error_and_returns_no_value(tmp_path, capsys):
    from zoo.errors import ZooError
    from zoo.job_status import read_status, run_recorded

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
    from zoo.errors import RunStopped
    from zoo.job_status import TRACEBACK, run_recorded

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


def test_a_sweep_goes_on_past_a_job_that_failed_unexpectedly_and_its_exit_status_says_so(
    tmp_path, monkeypatch
):
    from zoo import training

    real = training.train

    def train_unless_seed_1(cfg, run_dir):
        if cfg.seed == 1:
            raise RuntimeError("an unexpected bug\nwith a second line")
        return real(cfg, run_dir)

    monkeypatch.setattr(training, "train", train_unless_seed_1)
    sweep = tmp_path / "sweep"
    code, stderr = sweep_in_process(sweep, "seed=1,0", "debug=fast")
    assert code == 2, stderr
    rows = summary_rows(sweep)
    assert [(r["seed"], r["status"]) for r in rows] == [("1", "failed"), ("0", "ok")]
    kept = sweep / "0" / "traceback.txt"
    assert rows[0]["error"] == f"unexpected RuntimeError: an unexpected bug (traceback: {kept})"
    assert "RuntimeError: an unexpected bug" in kept.read_text()
    assert rows[1]["val_loss"] != "" and (sweep / "1" / "model" / "model.safetensors").is_file()
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        f"error: {rows[0]['error']}",
        "error: 1 of 2 jobs failed: 0 (failed)",
    ]
    assert (sweep / "sweep.png").is_file()


def test_sigterm_while_a_job_finishes_ends_the_sweep_after_that_job_with_143(tmp_path, monkeypatch):
    from test_long_runs import sigterm_during

    sigterm_during(monkeypatch, 4)  # the last dispatch of the first job (debug=fast: 2, 4)
    sweep = tmp_path / "sweep"
    code, stderr = sweep_in_process(sweep, "seed=0,1", "debug=fast")
    assert code == 143, stderr
    assert stderr.splitlines()[-1] == (
        "stopped: SIGTERM during the end of job 0: the job finished, the sweep stops before the "
        "next one; run the rest with trainer.resume=true and the same hydra.sweep.dir"
    )
    assert read_status(sweep / "0") == {"status": "ok"}  # the job finished whole
    assert (sweep / "0" / "model" / "model.safetensors").is_file()
    assert [(r["job"], r["status"], r["step"]) for r in summary_rows(sweep)] == [("0", "ok", "4")]
    assert not (sweep / "1").exists()  # the next job never started


def test_hparams_search_runs_optuna_trials_past_a_failed_one_and_reports_the_best(tmp_path):
    sweep = tmp_path / "search"
    result = run_script(
        "train.py",
        "hparams_search=lr_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.seed=7",  # draws 0.05, then 1e30
        "optim=sgd",
        "hydra.sweeper.params={optim.lr: 'choice(1e30, 0.05)'}",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.checkpoints=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 2, result.stderr[-3000:]  # a trial failed
    assert result.stderr.splitlines()[-1] == "error: 1 of 2 jobs failed: 1 (diverged)"
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["optim.lr"], r["status"]) for r in rows] == [("0.05", "ok"), ("1e+30", "diverged")]
    assert rows[0]["trainer.batch_size"] in ("64", "128", "256")  # drawn from the config's choice
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == float(rows[0]["val_loss"])
    assert best.best_params["optim.lr"] == 0.05
    assert "setup plugin alembic" not in result.stdout  # its INFO noise stays out of the log
