"""Checkpoints and exact resume: what a checkpoint holds, resuming bitwise, what is refused (a
changed shape, another run's checkpoints, a damaged or interrupted save), divergence guards,
SIGTERM in-process, and a full disk mid-run."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import compose_config
from helpers import (
    SHORT_RUN,
    SIGNAL_RUN,
    apps_in_one_process,
    complete_steps,
    partial_saves,
    records,
    short_run_with,
    sigterm_during,
    start_run,
    stop_when,
    train_in_process,
)
from safetensors.numpy import load_file

from zoo.checkpoint.manager import PARTIAL_MARK, Checkpoints
from zoo.errors import RunStopped, ZooError
from zoo.reporting import reporter
from zoo.training.build import build_run
from zoo.training.run import train


def restore_latest(run_dir: Path, *overrides: str):
    """The latest checkpoint of `run_dir`, restored the way a resume does."""
    cfg = compose_config("train", list(overrides))
    with Checkpoints(run_dir / "checkpoints", 3, cfg) as ckpts:
        return ckpts.restore(build_run(cfg).state)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """SHORT_RUN trained to the end, checkpoints at 20 and 40; copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("short_run")
    train_in_process(run_dir, *SHORT_RUN)
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_checkpoints_every_ckpt_every_steps_and_at_the_end_keeping_the_newest(tmp_path):
    train_in_process(
        tmp_path, *short_run_with("trainer.ckpt_every=15", "trainer.keep_checkpoints=2")
    )
    assert complete_steps(tmp_path) == [30, 40]
    # checkpoint steps are log points, so a resume splits the run exactly where it split before
    assert [r["step"] for r in records(tmp_path)] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_an_explicit_ckpt_every_saves_at_every_multiple_without_waiting_for_the_clock(tmp_path):
    # SHORT_RUN without ckpt_every_seconds: the default 300 s gate would leave only the last save
    overrides = [o for o in SHORT_RUN if "ckpt_every" not in o]
    train_in_process(tmp_path, *overrides, "trainer.steps=20", "trainer.ckpt_every=10")
    assert complete_steps(tmp_path) == [10, 20]


def test_a_checkpoint_holds_the_whole_train_state(short_run):
    state = restore_latest(short_run)
    assert int(state.step) == 40
    assert int(state.opt_state[0].count) == 40  # adam's step count: the optimizer state is there
    assert float(np.abs(state.opt_state[0].nu["middle"]["inner"]["kernel"][...]).sum()) > 0
    key_data = jax.random.key_data(state.data_key)
    assert key_data.tolist() == jax.random.key_data(jax.random.key(0)).tolist()
    saved = load_file(str(short_run / "model" / "model.safetensors"))
    np.testing.assert_array_equal(
        saved["middle.inner.kernel"], np.asarray(state.params["middle"]["inner"]["kernel"][...])
    )


def test_resume_extends_a_run_bitwise_like_an_uninterrupted_one(tmp_path, short_run):
    train_in_process(tmp_path, *short_run_with("trainer.steps=20"))
    train_in_process(tmp_path, *SHORT_RUN, "trainer.resume=true")
    assert records(tmp_path) == records(short_run)
    uninterrupted = load_file(str(short_run / "model" / "model.safetensors"))
    for key, value in load_file(str(tmp_path / "model" / "model.safetensors")).items():
        np.testing.assert_array_equal(value, uninterrupted[key])


def test_resume_with_no_checkpoint_starts_from_scratch_and_says_so(tmp_path, caplog, short_run):
    caplog.set_level("WARNING")
    train_in_process(tmp_path, *SHORT_RUN, "trainer.resume=true")
    assert "no complete checkpoint: starting from step 0" in caplog.text
    assert records(tmp_path) == records(short_run)


def test_training_again_into_a_run_with_checkpoints_needs_resume(tmp_path, short_run):
    run_dir = copy_run(short_run, tmp_path)
    with pytest.raises(ZooError, match=r"holds an earlier run's results .*trainer.resume=true"):
        train_in_process(run_dir, *SHORT_RUN)
    assert records(run_dir) == records(short_run)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            "model.hidden=16",
            r"model\.hidden: 8 -> 16\): params\.middle\.inner\.bias \(8,\) -> \(16,\)",
        ),
        (
            "model.depth=2",
            r"model\.depth: 1 -> 2\): params\.blocks\.inner\.bias absent -> \(1, 8\)",
        ),
        ("optim=sgd", r"optim\.name: adam -> sgd.*opt_state\.0\.count \(\) -> absent"),
    ],
)
def test_resume_refuses_a_config_that_changes_the_shape_of_the_state(
    tmp_path, short_run, change, named
):
    run_dir = copy_run(short_run, tmp_path)
    with pytest.raises(ZooError, match=f"cannot resume .*changes the shape.*{named}"):
        train_in_process(run_dir, *SHORT_RUN, "trainer.resume=true", change)


def test_resume_with_a_changed_learning_rate_warns_that_the_run_will_differ(
    tmp_path, short_run, caplog
):
    run_dir = copy_run(short_run, tmp_path)
    train_in_process(
        run_dir, *short_run_with("trainer.steps=45", "trainer.resume=true", "optim.lr=0.5")
    )
    assert "changed config (optim.lr: 0.01 -> 0.5)" in caplog.text
    assert [r["step"] for r in records(run_dir)] == [5, 10, 15, 20, 25, 30, 35, 40, 45]


def test_resume_past_the_configured_steps_is_refused(tmp_path, short_run):
    run_dir = copy_run(short_run, tmp_path)
    with pytest.raises(ZooError, match="step 40, past trainer.steps=20"):
        train_in_process(run_dir, *short_run_with("trainer.steps=20", "trainer.resume=true"))


def test_an_interrupted_save_is_never_resumed_from_and_is_removed(tmp_path, short_run):
    run_dir = copy_run(short_run, tmp_path)
    shutil.rmtree(run_dir / "model")
    # a save of step 40 cut short just before orbax renames it into place
    os.rename(run_dir / "checkpoints" / "40", run_dir / "checkpoints" / f"40{PARTIAL_MARK}")
    train_in_process(run_dir, *SHORT_RUN, "trainer.resume=true")
    assert partial_saves(run_dir) == []
    assert complete_steps(run_dir) == [20, 40]
    assert records(run_dir) == records(short_run)


def test_a_killed_save_of_best_or_model_is_cleaned_up_at_the_next_start(tmp_path, short_run):
    run_dir = copy_run(short_run, tmp_path)
    shutil.rmtree(run_dir / "model")
    # killed between save_pretrained's renames: best/ moved aside, its successor staged beside it
    os.rename(run_dir / "best", run_dir / ".best.k2j4h6g8.old")
    (run_dir / ".best.a1b2c3d4").mkdir()
    (run_dir / ".best.a1b2c3d4" / "model.safetensors").write_bytes(b"half")
    (run_dir / ".model.zz99yy_8").mkdir()
    (run_dir / ".metrics.jsonl.q1w2e3r4.tmp").write_text('{"step": 5')
    not_ours = [".best.notmine", ".best.a1b2c3d4.bak", ".model.a1b2", ".loss.png.tmp", ".notes"]
    for name in not_ours:
        (run_dir / name).mkdir()
    train_in_process(run_dir, *SHORT_RUN, "trainer.resume=true")
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == sorted(
        [".lock", *not_ours]
    )
    restored = load_file(str(run_dir / "best" / "model.safetensors"))
    for key, value in load_file(str(short_run / "best" / "model.safetensors")).items():
        np.testing.assert_array_equal(restored[key], value)
    assert records(run_dir) == records(short_run)


def locked_by_another(lock: Path) -> bool:
    """Whether a process other than the caller's descriptor holds `lock` (flock locks open
    files, so a descriptor of this process's own counts as another holder)."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_run_locks_its_default_checkpoint_directory_while_it_trains(tmp_path, monkeypatch):
    held = []
    report = reporter.Reporter.__call__

    def look_at_the_lock(self, record):
        report(self, record)
        held.append(locked_by_another(tmp_path / "checkpoints" / ".lock.0"))

    monkeypatch.setattr(reporter.Reporter, "__call__", look_at_the_lock)
    train_in_process(tmp_path, *short_run_with("trainer.steps=10"))
    assert held == [True, True]
    assert not locked_by_another(tmp_path / "checkpoints" / ".lock.0")  # released at the end


def test_a_run_pointed_at_another_runs_checkpoints_is_refused_and_changes_nothing(
    tmp_path, short_run
):
    run_a = copy_run(short_run, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (run_a / "checkpoints").rglob("*")}
    for ckpt_dir in (run_a / "checkpoints", run_a, run_a / "checkpoints" / "sub"):
        with pytest.raises(
            ZooError,
            match=f"trainer.ckpt_dir={ckpt_dir} lies in the directory of another run \\({run_a}\\)",
        ):
            train_in_process(
                tmp_path / "b",
                *short_run_with("trainer.steps=60", "trainer.resume=true", "seed=7"),
                f"trainer.ckpt_dir={ckpt_dir}",
            )
    assert {p: p.stat().st_mtime_ns for p in (run_a / "checkpoints").rglob("*")} == before
    assert complete_steps(run_a) == [20, 40]


def test_a_shared_checkpoint_directory_in_use_is_refused_and_its_save_in_progress_kept(tmp_path):
    shared = tmp_path / "shared"
    in_progress = shared / f"9600{PARTIAL_MARK}"
    in_progress.mkdir(parents=True)
    fd = os.open(shared / ".lock.0", os.O_RDWR | os.O_CREAT)  # another run's process 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ZooError, match=f"trainer.ckpt_dir={shared} is in use by another run"):
            train_in_process(
                tmp_path / "b", *SHORT_RUN, "trainer.resume=true", f"trainer.ckpt_dir={shared}"
            )
    finally:
        os.close(fd)
    assert in_progress.is_dir()


def truncate_arrays(step_dir: Path) -> None:
    for path in (step_dir / "state").rglob("d/*"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    [
        truncate_arrays,
        lambda d: (d / "meta" / "metadata").write_text("{not json"),
        lambda d: (d / "state" / "_METADATA").unlink(),
        lambda d: shutil.rmtree(d / "state"),
    ],
    ids=["truncated-arrays", "corrupt-meta", "missing-metadata", "missing-state"],
)
def test_a_damaged_checkpoint_is_a_clear_error_naming_it_and_the_way_back(
    tmp_path, short_run, damage
):
    run_dir = copy_run(short_run, tmp_path)
    where = run_dir / "checkpoints" / "40"
    damage(where)
    with pytest.raises(
        ZooError,
        match=f"checkpoint {where} is unreadable .*; delete {where} to resume from step 20$",
    ):
        train_in_process(run_dir, *SHORT_RUN, "trainer.resume=true")


ABSURD_LR = ["optim=sgd", "optim.lr=1e30", *short_run_with("trainer.ckpt_every=5")]


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory, short_run) -> dict[str, tuple[int, str, str, Path]]:
    """{case: (exit code, stdout, stderr, run directory)} of zoo-train's runs that stop with one
    line: a resume from a damaged checkpoint and an absurd learning rate, run by the app's own
    function in one child process (one interpreter and JAX start for both)."""
    work = tmp_path_factory.mktemp("stopped")
    damaged = Path(shutil.copytree(short_run, work / "damaged"))
    truncate_arrays(damaged / "checkpoints" / "40")
    runs = {
        "damaged": (damaged, [*SHORT_RUN, "trainer.resume=true"]),
        "absurd lr": (work / "absurd", ABSURD_LR),
    }
    cases = [("train", [f"hydra.run.dir={d}", *args]) for d, args in runs.values()]
    results = apps_in_one_process(cases, work)
    return {case: (*r, runs[case][0]) for case, r in zip(runs, results, strict=True)}


@pytest.mark.xdist_group("resume_stopped_runs")  # the fixture's child runs once, on one worker
def test_after_deleting_a_damaged_checkpoint_the_run_resumes_from_the_one_before(
    stopped_runs, short_run
):
    code, _, stderr, run_dir = stopped_runs["damaged"]
    assert code == 2
    assert stderr.startswith(f"error: checkpoint {run_dir / 'checkpoints' / '40'} is ")
    assert len(stderr.strip().splitlines()) == 1  # no traceback, no orbax noise

    shutil.rmtree(run_dir / "checkpoints" / "40")  # what the message says to do
    train_in_process(run_dir, *SHORT_RUN, "trainer.resume=true")
    assert records(run_dir) == records(short_run)


def test_a_checkpoint_directory_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").write_text("not a directory")
    with pytest.raises(ZooError, match="checkpoints: is a file, not a directory"):
        train_in_process(tmp_path, *SHORT_RUN)


def test_a_checkpoint_directory_that_breaks_mid_run_stops_it_with_one_line_and_it_resumes(
    tmp_path, short_run, monkeypatch
):
    ckpts = tmp_path / "checkpoints"
    report = reporter.Reporter.__call__

    def break_the_directory_at_step_25(self, record):
        report(self, record)
        if record["step"] == 25:
            deadline = time.monotonic() + 60
            while not (ckpts / "20").is_dir() and time.monotonic() < deadline:
                time.sleep(0.01)  # the save of step 20 is whole
            # root writes through any mode bits: a file where the directory was fails for anyone
            os.rename(ckpts, tmp_path / "aside")
            ckpts.write_text("")

    monkeypatch.setattr(reporter.Reporter, "__call__", break_the_directory_at_step_25)
    with pytest.raises(ZooError) as err:
        train_in_process(tmp_path, *SHORT_RUN)
    assert str(err.value) == (
        f"cannot write checkpoints in {ckpts} (Not a directory): the run stopped at step 40; "
        "make room there or fix the directory, then continue from the latest complete "
        "checkpoint with trainer.resume=true"
    )
    assert [r["step"] for r in records(tmp_path)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert not (tmp_path / "model").exists()  # as after SIGTERM: the run is not finished

    monkeypatch.undo()
    ckpts.unlink()  # the directory is back
    os.rename(tmp_path / "aside", ckpts)
    train_in_process(tmp_path, *SHORT_RUN, "trainer.resume=true")
    assert records(tmp_path) == records(short_run)
    assert complete_steps(tmp_path) == [20, 40] and partial_saves(tmp_path) == []


def test_non_finite_input_data_is_a_clear_error(tmp_path, monkeypatch):
    from zoo.config import registry
    from zoo.data.dataset import Dataset
    from zoo.data.teacher import teacher

    def broken(cfg, model_cfg):
        clean = teacher(cfg, model_cfg)
        return Dataset(
            clean.x_train.at[3, 1].set(np.nan),
            clean.y_train,
            clean.x_val,
            clean.y_val,
            task="regression",
        )

    monkeypatch.setattr(registry.entry("data", "teacher"), "builder", broken)
    with pytest.raises(ZooError, match="the train inputs hold non-finite values"):
        train_in_process(tmp_path, *SHORT_RUN)


def test_a_failed_model_write_leaves_the_previous_model_whole(tmp_path, short_run, monkeypatch):
    import zoo
    from zoo.weights import pretrained

    model = zoo.from_pretrained(short_run / "model")
    run_dir = copy_run(short_run, tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrained, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        zoo.save_pretrained(model, run_dir / "model")
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".model")) == []
    reloaded = zoo.from_pretrained(run_dir / "model")
    x = jax.random.normal(jax.random.key(1), (5, 4))
    np.testing.assert_array_equal(np.asarray(reloaded(x)), np.asarray(model(x)))


@pytest.mark.xdist_group("resume_stopped_runs")
def test_an_absurd_learning_rate_stops_with_one_line_and_a_finite_latest_checkpoint(stopped_runs):
    code, _, stderr, run_dir = stopped_runs["absurd lr"]
    assert code == 2
    assert stderr.strip().splitlines() == [
        "error: train_loss became non-finite at step 2: likely causes are a learning rate too "
        "high (optim.lr) or non-finite or badly scaled data; the latest checkpoint is the last "
        "good one"
    ]
    # no checkpoint before the first multiple of ckpt_every: a run starts again from its config
    assert complete_steps(run_dir) == [] and partial_saves(run_dir) == []
    assert not (run_dir / "model").exists()
    assert records(run_dir) == []  # no non-finite record, no partial line


def test_divergence_after_a_checkpoint_keeps_that_checkpoint_the_latest(tmp_path, short_run):
    run_dir = copy_run(short_run, tmp_path)
    shutil.rmtree(run_dir / "model")
    diverging = short_run_with("trainer.steps=60", "trainer.resume=true", "optim.lr=1e30")
    with pytest.raises(
        ZooError, match="non-finite at step 4[1-5]: .*the latest checkpoint is the last good one$"
    ):
        train_in_process(run_dir, *diverging)
    assert complete_steps(run_dir) == [20, 40] and partial_saves(run_dir) == []
    assert records(run_dir) == records(short_run)
    assert not (run_dir / "model").exists()


def test_sigterm_after_the_job_starts_and_before_training_is_one_line_and_leaves_nothing(
    tmp_path, short_run
):
    run_dir, log = tmp_path / "run", tmp_path / "log"
    proc = start_run(run_dir, log, *SIGNAL_RUN, f"init.from={short_run}")
    started = run_dir / ".hydra" / "config.yaml"
    # the job has started; the build (JAX, the data, init.from, the model) has not claimed the
    # checkpoint directory yet, which comes just before training
    stop_when(
        proc,
        lambda: started.exists() and not (run_dir / "checkpoints").exists(),
        signal.SIGTERM,
    )
    assert (proc.returncode, log.read_text().splitlines()[-1]) == (143, "stopped: SIGTERM")
    assert "Traceback" not in log.read_text()
    assert not run_dir.exists()  # a run directory that held no result yet


def test_sigterm_stops_at_the_next_log_point_but_on_the_last_dispatch_finishes_the_run(
    tmp_path, short_run, monkeypatch
):
    sigterm_during(monkeypatch, 15)
    with pytest.raises(RunStopped) as stop:
        train_in_process(tmp_path, *SHORT_RUN)
    assert stop.value.exit_code == 143
    assert str(stop.value) == (
        f"SIGTERM at step 15: checkpoint saved in {tmp_path / 'checkpoints'}; continue with "
        "trainer.resume=true and the same hydra.run.dir"
    )
    assert complete_steps(tmp_path) == [15] and not (tmp_path / "model").exists()

    monkeypatch.undo()
    sigterm_during(monkeypatch, 40)  # the resumed run's last dispatch: it finishes
    train_in_process(tmp_path, *SHORT_RUN, "trainer.resume=true")
    assert records(tmp_path) == records(short_run)
    uninterrupted = load_file(str(short_run / "model" / "model.safetensors"))
    for key, value in load_file(str(tmp_path / "model" / "model.safetensors")).items():
        np.testing.assert_array_equal(value, uninterrupted[key])


def test_several_processes_need_a_shared_checkpoint_directory(tmp_path, monkeypatch):
    # (tests/test_parallel.py trains two real processes with one shared trainer.ckpt_dir)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ZooError, match="trainer.ckpt_dir is required with 2 processes"):
        train_in_process(tmp_path, *SHORT_RUN)
    assert not (tmp_path / "checkpoints").exists()


def test_a_transformer_with_dropout_resumes_bitwise_like_an_uninterrupted_run(tmp_path):
    """Dropout's per-layer RNG streams live in the checkpointed state, so a resumed run draws
    the same masks an uninterrupted one does."""
    run = [
        "model=transformer", "data=sequence", "model.d_model=16", "model.num_heads=2",
        "model.dropout=0.2", "data.length=6", "data.n_train=256", "data.n_val=64",
        "trainer.batch_size=32", "trainer.log_every=5", "trainer.eval_every=10",
        "trainer.ckpt_every=10",
    ]  # fmt: skip
    whole = tmp_path / "whole"
    train(compose_config("train", [*run, "trainer.steps=20"]), whole)
    assert complete_steps(whole) == [10, 20]
    # the run as a kill just before its save at step 20 leaves it: the checkpoint at 10 and
    # records past it (which the resume drops and writes again), resumed
    parts = copy_run(whole, tmp_path)
    for later in ("model", "best", "checkpoints/20"):
        shutil.rmtree(parts / later)
    train(compose_config("train", [*run, "trainer.steps=20", "trainer.resume=true"]), parts)
    assert complete_steps(parts) == [10, 20]
    assert (parts / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    assert (parts / "model" / "model.safetensors").read_bytes() == (
        whole / "model" / "model.safetensors"
    ).read_bytes()
