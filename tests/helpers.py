"""Helpers several test files share."""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
from conftest import ROOT, compose_config
from flax import nnx
from safetensors.numpy import load_file

from zoo.checkpoint.manager import PARTIAL_MARK
from zoo.config.validate import validate
from zoo.data.dataset import make_dataset
from zoo.models.transformer.modeling import Transformer
from zoo.training.run import train

# --- from test_finetune.py


def tensors(path: Path) -> dict[str, np.ndarray]:
    """A saved model's tensors by state path."""
    return {k.replace(".", "/"): v for k, v in load_file(str(path / "model.safetensors")).items()}


# --- from test_long_runs.py

# Many small dispatches and checkpoints, so that a signal can land at every kind of moment.
SIGNAL_RUN = [
    "trainer.steps=240",
    "trainer.log_every=2",
    "trainer.eval_every=20",
    "trainer.ckpt_every=20",
    "trainer.ckpt_every_seconds=0",  # save at every multiple of ckpt_every, however fast
    "trainer.keep_checkpoints=2",
    "trainer.plots=false",  # no loss.png (nor zoo-train's plot helper): no test here reads one
]


SHORT_RUN = [
    "trainer.steps=40",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=20",
    "trainer.ckpt_every_seconds=0",
    "trainer.plots=false",  # no loss.png (nor zoo-train's plot helper): no test here reads one
]


def short_run_with(*changes: str) -> list[str]:
    """SHORT_RUN with some of its keys changed or others added."""
    keys = {change.split("=")[0] for change in changes}
    return [o for o in SHORT_RUN if o.split("=")[0] not in keys] + list(changes)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def complete_steps(run_dir: Path) -> list[int]:
    ckpts = run_dir / "checkpoints"
    return (
        sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []
    )


def partial_saves(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob(f"*{PARTIAL_MARK}*"))


def train_in_process(run_dir: Path, *overrides: str) -> dict:
    return train(compose_config("train", list(overrides)), run_dir)


def start_run(run_dir: Path, log: Path, *overrides: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    with log.open("w") as out:  # the child keeps its own copy of the handle
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_when(proc: subprocess.Popen, moment, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the run once `moment()` holds. The run is frozen (SIGSTOP) while `moment`
    is checked, so the run directory is exactly as the signal finds it."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the moment came"
        if moment():
            proc.send_signal(signal.SIGSTOP)
            if moment():
                proc.send_signal(sig)
                proc.send_signal(signal.SIGCONT)
                proc.wait(timeout=120)
                return
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("the moment never came")


# --- from test_pretrained.py


def edit_config(directory, change):
    config = json.loads((directory / "config.json").read_text())
    change(config)
    (directory / "config.json").write_text(json.dumps(config))


# --- from test_recipes.py


def flat(state) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


# --- from test_reporting.py

RECORDS = [
    {"step": 100, "train_loss": 1.0},
    {"step": 200, "train_loss": 0.1, "val_loss": 0.2, "val_accuracy": 0.8},
    {"step": 300, "train_loss": 0.01, "val_loss": 0.1, "val_accuracy": 0.9},
]


# --- from test_sequence.py


def sequence_data(*overrides):
    cfg = compose_config("train", ["model=transformer", "data=sequence", *overrides])
    validate(cfg)
    return cfg, make_dataset(cfg.data, cfg.model)


def ref_cross_entropy(logits, labels) -> float:
    """The mean cross-entropy of integer `labels` under `logits`, in numpy float64: a reference
    independent of JAX, with nothing to compile."""
    z = np.asarray(logits, np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    return float(-np.take_along_axis(log_p, np.asarray(labels)[..., None], -1).mean())


# --- from test_training.py


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- from test_transformer.py

# One small size everywhere, so the tests share compiled computations.
V, D, H = 10, 16, 4  # vocab, d_model, heads


def tokens(shape, vocab=V, seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 0, vocab)


def small(num_layers=3, seed=0, **kwargs) -> Transformer:
    return Transformer(
        V, d_model=D, num_heads=H, num_layers=num_layers, rngs=nnx.Rngs(seed), **kwargs
    )


# --- from test_user_data.py


X, Y = np.zeros((10, 3)), np.zeros(10)


def read_scalars(event_file):
    """(tag, step, value) of every scalar in a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    data, scalars, at = event_file.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


# --- sweeps


def _app_in_process(main, argv: list[str]) -> tuple[object, str, str]:
    """An app's function (`cli.train_app`, `cli.eval_main`) with `argv` in this process, Hydra's
    own logging off: the exit code, stdout and stderr."""
    argv += ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    out, err = io.StringIO(), io.StringIO()
    old_argv, sys.argv = sys.argv, argv
    full_errors = os.environ.pop("HYDRA_FULL_ERROR", None)  # the one-line behaviour is tested
    code: object = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = old_argv
        if full_errors is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_errors
        gc.unfreeze()  # the app freezes the heap for a process about to end
    return code, out.getvalue(), err.getvalue()


def _train_app_in_process(argv: list[str], directory: Path) -> tuple[object, str]:
    """zoo-train's function with `argv` in this process: the exit code and stderr;
    `directory`'s lock, held still by a run or sweep that stopped, is released."""
    from zoo.app import cli
    from zoo.training import run_dir

    try:
        code, _, stderr = _app_in_process(cli.train_app, argv)
    finally:
        run_dir.release(Path(directory), run_dir.LOCK)
    return code, stderr


def eval_app_in_process(*overrides: str) -> tuple[object, str, str]:
    """`zoo-eval <overrides>` from the current directory, in this process (what zoo-eval runs
    short of ending the process): the exit code, stdout and stderr."""
    from zoo.app import cli

    code, stdout, stderr = _app_in_process(cli.eval_main, ["eval.py", *overrides])
    return 0 if code is None else code, stdout, stderr


def sweep_in_process(sweep_dir: Path, *overrides: str) -> tuple[object, str]:
    """`zoo-train -m <overrides> hydra.sweep.dir=<sweep_dir>` in this process (what zoo-train
    runs short of ending the process, so a test can patch it): the exit code and stderr."""
    return _train_app_in_process(
        ["train.py", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"], sweep_dir
    )


def train_app_in_process(run_dir: Path, *overrides: str) -> tuple[object, str]:
    """`zoo-train <overrides> hydra.run.dir=<run_dir>` from the current directory, in this
    process, as sweep_in_process: the exit code and stderr."""
    return _train_app_in_process(["train.py", *overrides, f"hydra.run.dir={run_dir}"], run_dir)


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def sigterm_during(monkeypatch, end_step: int) -> None:
    """Send SIGTERM to this process while the fused dispatch that ends at `end_step` runs."""
    from zoo.training import build, steps

    make_steps = steps.make_steps

    def signalling_steps(*args, **kwargs):
        chunk, evaluate = make_steps(*args, **kwargs)

        def signalled(state, x, y, length):
            ends_at = int(state.step) + length
            out = chunk(state, x, y, length=length)
            if ends_at == end_step:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        return signalled, evaluate

    monkeypatch.setattr(build, "make_steps", signalling_steps)


# --- command-line tables


APPS_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import absl.logging  # its handler closes the stderr it was made with: the real one, not ours
    from zoo.app import cli

    results = []
    for app, args in json.load(open(sys.argv[1])):
        sys.argv = [app + ".py", *args]
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = cli.train_app() if app == "train" else cli.eval_main()
            code = code if isinstance(code, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        results.append([code, out.getvalue(), err.getvalue()])
    print(json.dumps(results))
    """
)


def apps_in_one_process(
    cases: list[tuple[str, list[str]]],
    work: Path,
    python: Path | str = sys.executable,
    cwd: Path = ROOT,
) -> list[tuple]:
    """(exit code, stdout, stderr) of each `<app>.py <args>` of `cases` (app: "train" or "eval"),
    run by the apps' own functions (what `zoo-train`/`zoo-eval` run short of ending the process)
    in ONE child process of `python` (another venv's, say): a table of refusals pays for one
    interpreter and one JAX start."""
    (work / "cases.json").write_text(json.dumps(cases))
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONPATH")}
    result = subprocess.run(
        [str(python), "-c", APPS_DRIVER, str(work / "cases.json")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return [tuple(r) for r in json.loads(result.stdout.strip().splitlines()[-1])]
