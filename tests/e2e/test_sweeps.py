"""Sweeps (-m) end to end: a job per directory and a summary, past diverged or failed jobs, SIGTERM
between jobs, and an Optuna search."""

from __future__ import annotations

import csv
import json

from conftest import run_script
from helpers import summary_rows, sweep_in_process
from omegaconf import OmegaConf

from zoo.app.job_status import read_status
from zoo.app.sweep_plot import _job_labels


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
        "trainer.plots=false",  # each job a process of its own: no matplotlib to import
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


def test_a_sweep_goes_on_past_a_diverged_job_and_its_exit_status_says_so(tmp_path):
    sweep = tmp_path / "sweep"
    code, stderr = sweep_in_process(
        sweep,
        "optim=sgd",
        "optim.lr=0.01,1e30,0.05",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.checkpoints=false",
    )
    assert code == 2, stderr[-3000:]
    rows = summary_rows(sweep)
    assert [(r["optim.lr"], r["status"]) for r in rows] == [
        ("0.01", "ok"),
        ("1e+30", "diverged"),
        ("0.05", "ok"),
    ]
    assert rows[1]["error"].startswith("train_loss became non-finite at step ")
    assert rows[1]["val_loss"] == "" and rows[2]["val_loss"] != ""  # nothing logged, then on
    assert float(rows[2]["val_loss"]) == last_metrics(sweep / "2")["val_loss"]
    assert (sweep / "2" / "model" / "model.safetensors").is_file()  # the job after it finished
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors[0] == f"error: {rows[1]['error']}"  # the job's own line, as it happened
    assert errors[-1] == "error: 1 of 3 jobs failed: 1 (diverged)"
    assert (sweep / "sweep.png").is_file()
    # the plot's legend: what the jobs vary, and which one diverged
    assert _job_labels([sweep / r["job"] for r in rows]) == [
        "optim.lr=0.01",
        "optim.lr=1e+30",
        "optim.lr=0.05",
    ]


def test_a_sweep_goes_on_past_a_job_that_failed_unexpectedly_and_its_exit_status_says_so(
    tmp_path, monkeypatch
):
    from zoo.training import run as training

    real = training.train

    def train_unless_seed_1(cfg, run_dir, *hooks):
        if cfg.seed == 1:
            raise RuntimeError("an unexpected bug\nwith a second line")
        return real(cfg, run_dir, *hooks)

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
    from helpers import sigterm_during

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
        "trainer.plots=false",
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
