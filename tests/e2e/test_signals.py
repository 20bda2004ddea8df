"""SIGKILL, SIGTERM and Ctrl-C at any moment of real `train.py` subprocesses (and Ctrl-C
in-process): resuming gives the uninterrupted run, bitwise."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from helpers import (
    SIGNAL_RUN,
    complete_steps,
    partial_saves,
    records,
    short_run_with,
    start_run,
    stop_when,
    tensors,
    train_app_in_process,
    train_in_process,
)
from safetensors.numpy import load_file

import zoo
from zoo.errors import RunStopped
from zoo.reporting import reporter

FROZEN_RUN = [
    "model=mlp",
    "optim.freeze=[layers/0]",
    "optim.lr_mult={head:3,layers:0.5}",
    "trainer.steps=60",
    "trainer.log_every=2",
    "trainer.eval_every=20",
    "trainer.ckpt_every=20",
    "trainer.ckpt_every_seconds=0",  # save at every multiple of ckpt_every, however fast
]


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = pytest.mark.xdist_group("signals")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """SIGNAL_RUN trained start to end without interruption."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train_in_process(run_dir, *SIGNAL_RUN)
    return run_dir


def test_freeze_and_lr_mult_survive_sigkill_and_resume_bitwise(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="zoo")
    whole, run_dir = tmp_path / "whole", tmp_path / "run"
    zoo.train(FROZEN_RUN, run_dir=whole)
    assert (
        "parameter groups: 4,225 trainable parameters, 320 frozen (2 tensors: layers/0/bias, "
        "layers/0/kernel); learning rate x 3 for head/bias, 3 for head/kernel, 0.5 for "
        "layers/1/bias, 0.5 for layers/1/kernel"
    ) in caplog.messages

    proc = start_run(run_dir, tmp_path / "log", *FROZEN_RUN)
    stop_when(proc, lambda: 20 <= max(complete_steps(run_dir), default=0) < 60)
    assert proc.returncode != 0 and not (run_dir / "model").exists()
    zoo.train([*FROZEN_RUN, "trainer.resume=true"], run_dir=run_dir)
    assert partial_saves(run_dir) == []
    assert records(run_dir) == records(whole)
    resumed, uninterrupted = tensors(run_dir / "model"), tensors(whole / "model")
    for path, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg=path)

    initial = zoo.create_model("mlp", rngs=nnx.Rngs(0))  # the run's model: seed 0, teacher's widths
    for path, variable in nnx.to_flat_state(nnx.state(initial, nnx.Param)):
        key = "/".join(map(str, path))
        frozen = key.startswith("layers/0/")
        assert np.array_equal(resumed[key], variable[...]) is frozen, key
    # what the checkpoint holds of the optimizer: adam's moments of the trainable tensors only
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(run_dir / "checkpoints", item_handlers=handlers) as manager:
        saved = manager.item_metadata(60)["state"]["opt_state"]
    moments = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(saved)]
    assert [m for m in moments if "['mu']" in m] == [
        "['inner_states']['lr*0.5']['inner_state'][0][0]['mu']['layers']['1']['bias']['value']",
        "['inner_states']['lr*0.5']['inner_state'][0][0]['mu']['layers']['1']['kernel']['value']",
        "['inner_states']['lr*3']['inner_state'][0][0]['mu']['head']['bias']['value']",
        "['inner_states']['lr*3']['inner_state'][0][0]['mu']['head']['kernel']['value']",
    ]


def test_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted):
    run_dir, log = tmp_path / "run", tmp_path / "log"
    started = run_dir / ".hydra" / "config.yaml"

    # 1. before the first checkpoint: the run starts over
    proc = start_run(run_dir, log, *SIGNAL_RUN)
    stop_when(proc, lambda: started.exists() and not complete_steps(run_dir))
    assert complete_steps(run_dir) == []

    # 2. between checkpoints (none being written)
    proc = start_run(run_dir, log, *SIGNAL_RUN, "trainer.resume=true")
    stop_when(
        proc, lambda: max(complete_steps(run_dir), default=0) >= 60 and not partial_saves(run_dir)
    )
    assert max(complete_steps(run_dir)) >= 60

    # 3. in the middle of a save: the partial save is never taken, and is removed
    proc = start_run(run_dir, log, *SIGNAL_RUN, "trainer.resume=true")
    latest = max(complete_steps(run_dir))
    stop_when(
        proc, lambda: any(int(p.name.split(".")[0]) > latest + 40 for p in partial_saves(run_dir))
    )
    assert partial_saves(run_dir)

    # 4. to the end (in this process: what a resume finds on disk is what the kills left)
    train_in_process(run_dir, *SIGNAL_RUN, "trainer.resume=true")
    assert partial_saves(run_dir) == []
    assert records(run_dir) == records(uninterrupted)
    resumed = load_file(str(run_dir / "model" / "model.safetensors"))
    for key, value in load_file(str(uninterrupted / "model" / "model.safetensors")).items():
        np.testing.assert_array_equal(resumed[key], value)


# Every recipe that keeps state: a schedule (its count), clipping, accumulation, an EMA, and a
# monitor whose best is the first evaluation (max of a falling loss), so a resume that forgot
# it would write a later one to best/.
RECIPE_RUN = [
    "trainer.steps=120",
    "trainer.log_every=2",
    "trainer.eval_every=10",
    "trainer.ckpt_every=10",
    "trainer.keep_checkpoints=2",
    "trainer.batch_size=64",
    "trainer.accumulate=2",
    "trainer.ema=0.9",
    "trainer.monitor_mode=max",
    "trainer.patience=100",
    "optim.schedule=cosine",
    "optim.warmup_steps=20",
    "optim.clip_norm=0.5",
    "trainer.ckpt_every_seconds=0",
]


def last_meta(run_dir: Path) -> dict:
    step = max(complete_steps(run_dir))
    return json.loads((run_dir / "checkpoints" / str(step) / "meta" / "metadata").read_text())


def test_sigkill_twice_with_every_recipe_then_resume_gives_the_uninterrupted_run(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    train_in_process(uninterrupted, *RECIPE_RUN)
    run_dir, log = tmp_path / "run", tmp_path / "log"

    # 1. between checkpoints (none being written)
    proc = start_run(run_dir, log, *RECIPE_RUN)
    stop_when(
        proc, lambda: max(complete_steps(run_dir), default=0) >= 30 and not partial_saves(run_dir)
    )
    # 2. in the middle of a save, after the next evaluation at least
    proc = start_run(run_dir, log, *RECIPE_RUN, "trainer.resume=true")
    latest = max(complete_steps(run_dir))
    stop_when(
        proc, lambda: any(int(p.name.split(".")[0]) > latest + 10 for p in partial_saves(run_dir))
    )
    assert partial_saves(run_dir) and max(complete_steps(run_dir)) < 120

    # 3. to the end (in this process: what a resume finds on disk is what the kills left)
    train_in_process(run_dir, *RECIPE_RUN, "trainer.resume=true")
    assert records(run_dir) == records(uninterrupted)
    assert last_meta(run_dir)["monitor"] == last_meta(uninterrupted)["monitor"]
    assert last_meta(run_dir)["monitor"]["best_step"] == 10
    for saved in ("model", "best"):
        resumed = load_file(str(run_dir / saved / "model.safetensors"))
        for key, value in load_file(str(uninterrupted / saved / "model.safetensors")).items():
            np.testing.assert_array_equal(resumed[key], value)


def test_ctrl_c_saves_at_the_current_step_exits_130_and_resumes_and_a_second_run_is_refused(
    tmp_path, uninterrupted
):
    run_dir, log = tmp_path / "run", tmp_path / "log"
    proc = start_run(run_dir, log, *SIGNAL_RUN)
    metrics = run_dir / "metrics.jsonl"
    lock = run_dir / ".lock"
    while not metrics.exists():  # the run holds its directory
        assert proc.poll() is None, log.read_text()
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)  # and keeps holding it while a second run tries
    try:  # zoo-train's own function, in this process: another process than the run's
        second = train_app_in_process(run_dir, *SIGNAL_RUN, "seed=5")
        # another run pointed at this run's checkpoints (issue 19): refused before it writes
        third = train_app_in_process(
            tmp_path / "third",
            *SIGNAL_RUN,
            f"trainer.ckpt_dir={run_dir / 'checkpoints'}",
            "trainer.resume=true",
            "seed=7",
        )
    finally:
        proc.send_signal(signal.SIGCONT)
    assert third == (
        2,
        f"error: trainer.ckpt_dir={run_dir / 'checkpoints'} lies in the directory of another run "
        f"({run_dir}): its checkpoints are that run's; choose a directory of this run's own, or "
        "continue that run with its own hydra.run.dir\n",
    )
    assert not (tmp_path / "third").exists()
    assert second == (
        2,
        f"error: hydra.run.dir={run_dir} is in use by another run ({lock.read_text().strip()}): "
        "wait for it to end, or choose another hydra.run.dir\n",
    )
    assert f"pid {proc.pid} on " in lock.read_text()
    assert "seed: 0" in (run_dir / ".hydra" / "config.yaml").read_text().splitlines()
    stop_when(
        proc, lambda: metrics.exists() and metrics.read_text().count("\n") >= 25, signal.SIGINT
    )
    output = log.read_text()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    last = records(run_dir)[-1]["step"]
    assert output.strip().splitlines()[-1] == (
        f"stopped: Ctrl-C (SIGINT) at step {last}: checkpoint saved in "
        f"{run_dir / 'checkpoints'}; continue with trainer.resume=true and the same hydra.run.dir"
    )
    assert max(complete_steps(run_dir)) == last and partial_saves(run_dir) == []
    assert not (run_dir / "model").exists()

    train_in_process(run_dir, *SIGNAL_RUN, "trainer.resume=true")
    assert records(run_dir) == records(uninterrupted)  # nothing of the refused run in them


def catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGTERM (Linux: SigCgt in /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def test_sigterm_during_start_up_stops_with_one_line_and_leaves_no_run_directory(tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "log"
    proc = start_run(run_dir, log, *SIGNAL_RUN)
    deadline = time.monotonic() + 60
    while not catches_sigterm(proc.pid):  # from the first moment: while Python imports the app
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()
    assert log.read_text() == "stopped: SIGTERM\n"
    assert not run_dir.exists()


def test_ctrl_c_saves_at_the_next_log_point_and_stops_like_sigterm(tmp_path, monkeypatch):
    """As SIGTERM (resumed bitwise above), but in process: the save at that log point is forced
    whatever the schedule, and exit status 130 = 128 + SIGINT."""
    overrides = short_run_with("trainer.ckpt_every_seconds=1000000")  # no save but the forced
    report = reporter.Reporter.__call__
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where pytest started in the background

    def ctrl_c_at_step_15(self, record):
        report(self, record)
        if record["step"] == 15:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(reporter.Reporter, "__call__", ctrl_c_at_step_15)
    with pytest.raises(
        RunStopped, match=r"^Ctrl-C \(SIGINT\) at step 15: checkpoint saved in "
    ) as stop:
        train_in_process(tmp_path, *overrides)
    assert stop.value.exit_code == 130
    assert complete_steps(tmp_path) == [15] and partial_saves(tmp_path) == []
    assert [r["step"] for r in records(tmp_path)] == [5, 10, 15]
    assert signal.getsignal(signal.SIGINT) is before  # handed back
