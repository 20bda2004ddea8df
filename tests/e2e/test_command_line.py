"""The apps as a user runs them, `train.py`/`eval.py` in subprocesses: one line and a non-zero
exit for each mistake, the runs and evaluations the docs show, `--help`. Where a subprocess would
prove nothing more (an evaluation of a run made here, two more training runs), zoo-eval's or
zoo-train's own function runs in this process, from the directory a user would start it in."""

from __future__ import annotations

import json
import subprocess
import sys

import hydra
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DEFAULT_XLA, ROOT, compose_config, run_script
from flax import nnx
from helpers import (
    X,
    apps_in_one_process,
    edit_config,
    eval_app_in_process,
    read_metrics,
    train_app_in_process,
)
from matplotlib.image import imread
from omegaconf import OmegaConf

import zoo
from zoo.errors import ZooError
from zoo.training.run import train


def test_an_absent_gpu_backend_is_one_line_not_a_fall_back_to_the_cpu(tmp_path):
    result = run_script(
        "train.py", "trainer.steps=1", f"hydra.run.dir={tmp_path}", env={"JAX_PLATFORMS": "cuda"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: JAX_PLATFORMS=cuda asks for a backend JAX cannot start (no such device "
        "visible); for NVIDIA GPUs: make install ACCEL=cuda12 (README: GPUs), or unset "
        "JAX_PLATFORMS"
    ]
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing ran on another backend


UNKNOWN_KEYS = [
    ("+trainer.bogus=1", "error: unknown key trainer.bogus"),
    ("+optim.bogus=1", "error: unknown key optim.bogus"),
    ("+foo=1", "error: unknown key foo"),
    (
        "optim.name=sgd",
        "error: optim.name=sgd does not choose the optim; it is set by the option: use optim=sgd",
    ),
    (
        "data.name=npz",
        "error: data.name=npz does not choose the data; it is set by the option: use data=npz",
    ),
    ("trainer.stepz=3", "error: unknown key trainer.stepz; did you mean trainer.steps?"),
]


BAD_VALUES = [
    ("model.depth=0", "model.depth=0 is invalid"),
    ("model.depth=abc", "model.depth"),
    ("model.depht=3", "model.depht"),
    ("model.activation=swish2", "model.activation='swish2' is invalid"),
    ("optim.lr=-1", "optim.lr=-1.0 is invalid"),
    ("optim=adagrad", "optim/adagrad"),
    ("trainer.batch_size=0", "trainer.batch_size=0 is invalid"),
]


REFUSALS = pytest.mark.xdist_group("cli_refusals")  # one worker runs the fixture's one child


EVAL_BAD_INPUTS = [["run_dir=/nonexistent/run"], ["x=[1,2]"]]


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple]:
    """Every refusal of the tables here, run by train.py's and eval.py's own functions in one
    child process (other tests here run the scripts themselves):
    {"<app> <args>": (exit code, stdout, stderr, run dir)}."""
    work = tmp_path_factory.mktemp("refused")
    train = [o for o, _ in UNKNOWN_KEYS + BAD_VALUES] + ["data=npz", "model=transformer"]
    dirs = [work / f"run{i}" for i in range(len(train))]
    cases = [("train", [o, f"hydra.run.dir={d}"]) for o, d in zip(train, dirs, strict=True)]
    cases += [("eval", args) for args in EVAL_BAD_INPUTS]
    dirs += [None] * len(EVAL_BAD_INPUTS)
    results = apps_in_one_process(cases, work)
    names = [f"{app} {args[0]}" for app, args in cases]
    return {n: (*r, d) for n, r, d in zip(names, results, dirs, strict=True)}


@REFUSALS
@pytest.mark.parametrize(("override", "line"), UNKNOWN_KEYS)
def test_the_command_line_refuses_unknown_keys_with_one_line_and_no_traceback(
    refused, override, line
):
    code, stdout, stderr, _ = refused[f"train {override}"]
    assert code == 2, (override, stderr)
    (printed,) = stderr.strip().splitlines()
    assert printed.startswith(line), printed
    assert "jax" not in stdout  # refused before any JAX work


def test_help_lists_the_options_and_every_setting_but_no_schema():
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "zoo_" not in result.stdout
    presets = [p.stem for p in (ROOT / "configs" / "model").glob("*.yaml")]
    families = [p.parent.name for p in (ROOT / "zoo" / "models").glob("*/settings.py")]
    options = sorted(presets + families)  # every family's schema and every preset file
    assert f"model: {', '.join(options)}" in result.stdout
    assert "model.depth=1  number of blocks" in result.stdout
    assert "optim.lr=0.01  learning rate" in result.stdout


def test_zoo_train_from_python_leaves_a_run_eval_py_reads(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    metrics = zoo.train(
        ["model=mlp", "model.widths=[8]", "trainer.steps=20", "trainer.eval_every=20"],
        run_dir=run_dir,
    )
    assert (run_dir / "config.yaml").is_file() and not (run_dir / ".hydra").exists()
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = eval_app_in_process(f"run_dir={run_dir}")
    assert code == 0, stderr
    assert f"val_loss = {metrics['val_loss']:.6g}" in stdout
    with pytest.raises(ZooError, match="unknown key trainer.stepz; did you mean trainer.steps"):
        zoo.train(["trainer.stepz=3"], run_dir=tmp_path / "other")


def test_eval_on_a_run_with_a_tampered_model_exits_with_one_line(tmp_path):
    """A run directory as train.py leaves it, whose model/ config.json was edited."""
    cfg = compose_config("train")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    zoo.save_pretrained(hydra.utils.instantiate(cfg.model, rngs=nnx.Rngs(0)), tmp_path / "model")
    edit_config(tmp_path / "model", lambda c: c.update(_target_="builtins.exec"))
    code, _, stderr = eval_app_in_process(f"run_dir={tmp_path}")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "_target_" in lines[0], lines


def test_sweep_picture_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "zoo.app.sweep_plot", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no job folders with a metrics.jsonl"


def test_train_run_without_a_terminal_logs_lines_once_and_leaves_its_files(tmp_path):
    result = run_script(
        "train.py", "trainer.steps=300", "trainer.eval_every=150", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if "] - step=" in line]
    assert [line.split("] - ")[1].split(" train_loss")[0] for line in shown] == [
        "step=100/300",
        "step=150/300",
        "step=200/300",
        "step=300/300",
    ]
    logged = [line for line in (tmp_path / "train.log").read_text().splitlines() if line[:1] == "["]
    assert [line for line in logged if "] - step=" in line] == shown
    assert len(logged) == len(set(logged))  # no record logged twice
    assert "total" in result.stdout and "middle/inner/kernel" in result.stdout  # the summary
    assert {"loss.png", "metrics.jsonl", "model", "train.log"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert imread(tmp_path / "loss.png").ndim == 3  # drawn by zoo-train's plot helper
    assert "\r" not in result.stderr  # no bar drawn into a pipe


def test_refusals_on_the_command_line_are_one_line_and_leave_no_directory(tmp_path):
    result = run_script("train.py", "trainer.steps=-1", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: trainer.steps=-1 is invalid: must be an integer >= 0\n",
    )
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>/ with an empty train.log
    (tmp_path / "taken").write_text("")
    result = run_script("train.py", f"hydra.run.dir={tmp_path / 'taken'}", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        f"error: hydra.run.dir={tmp_path / 'taken'}: is a file, not a directory\n",
    )


@REFUSALS
def test_model_transformer_with_the_default_data_exits_with_one_line(refused):
    code, _, stderr, _ = refused["train model=transformer"]
    assert code == 2
    assert stderr.strip().splitlines() == [
        "error: data.in_features cannot be resolved: "
        "Interpolation key 'model.in_features' not found "
        "(this data follows the model's settings: choose data the model takes)"
    ]


def test_eval_mode_summary_prints_the_table_without_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = eval_app_in_process("mode=summary", "model.depth=4")
    assert code == 0, stderr
    lines = {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line}
    assert lines["blocks/inner/kernel"] == ["(3,", "8,", "8)", "float32", str(3 * 8 * 8)]
    expected = 4 * 8 + 8 + 3 * (8 * 8 + 8)  # first block, then 3 stacked hidden->hidden blocks
    assert lines["total"] == [f"{expected:,}"]
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_deeper_gelu_model_trains(tmp_path):
    # zoo-train's function in this process: the script itself runs in the test above
    code, stderr = train_app_in_process(
        tmp_path,
        "model=deep_nested",
        "model.depth=4",
        "model.activation=gelu",
        "model.hidden=32",
        "trainer.steps=600",
        "trainer.plots=false",  # loss.png: the run without a terminal above
    )
    assert code == 0, stderr
    records = read_metrics(tmp_path)
    assert records[-1]["train_loss"] < 0.2 * records[0]["train_loss"]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["kwargs"]["depth"] == 4 and config["kwargs"]["activation"] == "gelu"
    assert records[-1]["step"] == 600  # train.log: the run without a terminal above


@REFUSALS
@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_cli_bad_value_exits_nonzero_with_one_line(refused, override, key):
    code, stdout, stderr, run_dir = refused[f"train {override}"]
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and key in lines[0]
    assert "Traceback" not in stderr + stdout
    assert not (run_dir / "metrics.jsonl").exists()


def test_eval_default_matches_the_seed_function():
    """The default check under XLA's default flags, as a user runs it (the other tests compile
    faster)."""
    result = run_script("eval.py", env=DEFAULT_XLA)
    assert result.returncode == 0, result.stderr
    assert "max_abs_diff = 0: match" in result.stdout
    # against the oracle computed here, under this process's flags
    code, stdout, stderr = eval_app_in_process("seed=7", "model.hidden=5", "x=[1,2,3,4]")
    assert code == 0, stderr
    model_line = next(line for line in stdout.splitlines() if line.startswith("model"))
    values = json.loads(model_line.split("=", 1)[1])
    import seed_reference as ref

    want = ref.deep_nested_forward(7.0, jnp.array([1.0, 2, 3, 4]), 5.0)
    np.testing.assert_array_equal(np.float32(values), np.asarray(want))


def test_eval_reports_a_runs_validation_loss(tmp_path):
    cfg = compose_config("train", ["trainer.steps=200", "trainer.eval_every=200"])
    logged = train(cfg, tmp_path)["val_loss"]
    (tmp_path / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    code, stdout, stderr = eval_app_in_process(f"run_dir={tmp_path}")
    assert code == 0, stderr
    reported = float(stdout.split("val_loss = ")[1].split()[0])
    assert reported == pytest.approx(logged, rel=1e-5)


@REFUSALS
@pytest.mark.parametrize("args", EVAL_BAD_INPUTS)
def test_eval_bad_input_exits_nonzero_with_one_line(refused, args):
    code, _, stderr, _ = refused[f"eval {args[0]}"]
    assert code != 0
    assert stderr.strip().startswith("error: ") and len(stderr.strip().splitlines()) == 1


def test_bad_file_from_the_command_line_is_one_line_and_exit_2(tmp_path):
    np.savez(tmp_path / "bad.npz", x=X, y=np.zeros(9))
    result = run_script("train.py", "data=npz", f"data.path={tmp_path / 'bad.npz'}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {tmp_path / 'bad.npz'}: x has 10 rows but y has 9"]
    assert "Traceback" not in result.stdout + result.stderr


@REFUSALS
def test_npz_without_a_path_names_the_key(refused):
    code, _, stderr, _ = refused["train data=npz"]
    assert code == 2
    assert stderr.strip() == "error: data.path is required: set data.path=<a string>"


def test_eval_of_a_run_finds_a_relative_data_path_from_anywhere(
    regression_npz, tmp_path, monkeypatch
):
    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    launch.mkdir()
    elsewhere.mkdir()
    (launch / "reg.npz").write_bytes(regression_npz.read_bytes())
    run_dir = tmp_path / "run"
    monkeypatch.chdir(launch)  # zoo-train's function, in this process, launched from `launch`
    code, stderr = train_app_in_process(
        run_dir, "data=npz", "data.path=reg.npz", "trainer.steps=100", "trainer.plots=false"
    )
    assert code == 0, stderr
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
    monkeypatch.chdir(elsewhere)
    code, stdout, stderr = eval_app_in_process(f"run_dir={run_dir}")
    assert code == 0, stderr
    assert float(stdout.split("val_loss = ")[1].split()[0]) == pytest.approx(logged, rel=1e-5)
