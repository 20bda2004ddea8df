"""Nothing lost, nothing unchecked: run directories owned by one run, no silent overwrite, sizes
checked before allocating, signals, the umask, and one line for each bad input. In-process; the
command line is proven by one test here and the Ctrl-C test in test_long_runs.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, run_script
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from zoo import data as data_module
from zoo import memory, rundir, training
from zoo.build import build_model, build_run, model_kwargs
from zoo.checkpoint import keep_metrics_until
from zoo.config import validate
from zoo.datafiles import read_csv, read_npz
from zoo.errors import ZooError
from zoo.evaluation import evaluate_run, print_summary
from zoo.files import write_atomically
from zoo.interrupts import StopRequest
from zoo.optimizers import make_optimizer

SHORT = [
    "trainer.steps=40",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=20",
]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def hydra_config(*overrides: str):
    """The config with its `hydra` node, as Hydra hands it to callbacks."""
    from conftest import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", list(overrides), return_hydra_config=True)


def run_start(cfg) -> None:
    """RunDirectory.on_run_start, then release what it claimed (the test process lives on)."""
    callback = rundir.RunDirectory()
    try:
        callback.on_run_start(cfg)
    finally:
        callback.on_run_end(cfg)
        HydraConfig.instance().cfg = None  # as outside a Hydra app


# --- one run per directory ---------------------------------------------------------------------

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on elsewhere".encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_a_directory_locked_by_a_live_process_is_refused_and_a_dead_ones_lock_never_blocks(
    tmp_path,
):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ZooError) as err:
            rundir.acquire(tmp_path)
        assert str(err.value) == (
            f"hydra.run.dir={tmp_path} is in use by another run (pid {holder.pid} on elsewhere): "
            "wait for it to end, or choose another hydra.run.dir"
        )
    finally:
        holder.kill()  # dies holding the lock: the kernel drops it
        holder.wait()
    rundir.acquire(tmp_path)
    rundir.acquire(tmp_path)  # the same process again: counted, not refused
    assert (tmp_path / ".lock").read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"
    rundir.release(tmp_path)
    rundir.release(tmp_path)
    assert not rundir._held


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
    callback = rundir.RunDirectory()
    with pytest.raises(SystemExit):
        callback.on_multirun_start(hydra_config(f"hydra.sweep.dir={tmp_path}"))
    callback.on_multirun_end(None)
    assert "earlier sweep's results (3/model/): resume its jobs" in capsys.readouterr().err


def test_default_run_directories_differ_for_runs_started_in_the_same_second():
    first, second = (str(hydra_config().hydra.run.dir) for _ in range(2))
    assert first != second
    assert first.endswith(f"-{os.getpid()}") and second.endswith(f"-{os.getpid()}")
    assert str(hydra_config().hydra.sweep.dir).startswith("multirun/")


@pytest.mark.slow
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


# --- signals -----------------------------------------------------------------------------------


def test_a_second_ctrl_c_stops_at_once_with_one_line(monkeypatch, capsys):
    exits, before = [], signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(os, "_exit", exits.append)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received and exits == []
        os.kill(os.getpid(), signal.SIGINT)
    assert exits == [130]
    assert capsys.readouterr().err.startswith("stopped: Ctrl-C twice: stopped at once; ")
    assert signal.getsignal(signal.SIGINT) is before


# --- task and size sanity ----------------------------------------------------------------------


def npz_data(tmp_path: Path, y: np.ndarray, *overrides: str):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(len(y), 3)), y=y)
    cfg = compose_config("train", ["data=npz", f"data.path={tmp_path / 'd.npz'}", *overrides])
    return data_module.make_dataset(cfg.data, cfg.model)


def test_integer_targets_are_classes_only_when_they_look_like_classes(tmp_path, caplog):
    rng = np.random.default_rng(1)
    labels = npz_data(tmp_path, rng.integers(0, 4, 200))
    assert (labels.task, labels.num_classes) == ("classification", 4)
    caplog.set_level("INFO")
    prices = npz_data(tmp_path, rng.integers(100_000, 500_000, 200))
    assert (prices.task, prices.out_features) == ("regression", 1)
    assert "y holds integers but not class labels 0..K-1 with K <= 100 (its largest value, " in (
        caplog.text
    )
    negative = npz_data(tmp_path, np.array([-1, 0, 1, 0] * 10))
    assert negative.task == "regression"


def test_labels_that_cannot_be_classes_are_one_line_before_any_allocation(tmp_path):
    y = np.zeros(100, dtype=np.int64)
    y[:50], y[7] = 1, 10**7
    with pytest.raises(
        ZooError,
        match=r"d.npz: data.task=classification, but the targets cannot be class labels: its "
        r"largest value, 10000000, would make 10,000,001 classes \(labels are 0..K-1, K at most "
        r"the number of rows, 100\)$",
    ):
        npz_data(tmp_path, y, "data.task=classification")


def test_a_huge_csv_label_is_not_called_negative_and_a_bom_csv_reads(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,y\n1,0\n2,1\n3,99999999999999999999\n4,1\n")
    cfg = compose_config(
        "train", ["data=csv", f"data.path={path}", "data.target=y", "data.task=classification"]
    )
    with pytest.raises(ZooError, match="its largest value, 100000000000000000000, would make"):
        data_module.make_dataset(cfg.data, cfg.model)
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffprice,rooms\n1.5,2\n2.5,3\n".encode())
    arrays = read_csv(excel, "price")
    assert arrays["y"].tolist() == [1.5, 2.5] and arrays["x"].tolist() == [[2.0], [3.0]]


def bad_npz(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "bad.npz"
    x = np.ones((10, 3))
    if case == "zip cut short":
        np.savez(path, x=x, y=np.zeros(10))
        path.write_bytes(path.read_bytes()[:300])
    elif case == "member cut short":
        with zipfile.ZipFile(path, "w") as archive:
            with archive.open("x.npy", "w") as member:
                np.save(member, x)
            with archive.open("y.npy", "w") as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f8", "fortran_order": False, "shape": (10,)}
                )
                member.write(np.zeros(4).tobytes())  # 4 of the 10 values
    elif case == "not a .npy":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", b"")
            archive.writestr("y.txt", b"1,2,3")
    elif case == "float32 overflow":
        np.savez(path, x=np.where(np.eye(10, 3) > 0, 1e300, 0.0), y=np.zeros(10))
    elif case == "nan":
        np.savez(path, x=x, y=np.array([0.0, np.nan] * 5))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("zip cut short", "a damaged or cut short .npz file (its zip directory is missing)"),
        ("member cut short", "y is cut short: its header says float64 (10,) (80 bytes) but it "),
        ("not a .npy", "member 'y.txt' is not a .npy array (write the file with numpy.savez)"),
        ("float32 overflow", "x holds 1e+300 at index (0, 0), beyond float32's range"),
        ("nan", "y holds NaN or infinite values (first at index (1,))"),
    ],
)
def test_bad_npz_files_are_named_for_what_they_are(tmp_path, case, message):
    path = bad_npz(tmp_path, case)
    with pytest.raises(ZooError) as err:
        read_npz(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_a_non_integer_step_in_metrics_is_one_line_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "train_loss": 1.0}\n{"step": "10", "train_loss": 0.5}\n')
    with pytest.raises(ZooError, match=r"metrics.jsonl:2: step '10' is not an integer$"):
        keep_metrics_until(path, 10)


HUGE = [  # refused by a setting's upper bound, or else by the memory estimate
    "model.hidden=1000000000",
    "model.out_features=1000000000",
    "trainer.batch_size=100000000000",
    "data.n_train=10000000000",
    "trainer.steps=100000000000000",
    "model=mlp model.widths=[1000000000]",
    "model.depth=100000000",
    "model=mlp model.widths=[1000000,1000000]",
]
TOO_BIG = r"needs (about )?[\d.]+ [GTP]B (of memory|on \w+:0)|is invalid: must be .*<="


@pytest.mark.parametrize("overrides", HUGE)
def test_sizes_that_cannot_fit_are_one_line_before_anything_is_allocated(monkeypatch, overrides):
    monkeypatch.setattr(memory, "host_available", lambda: 64 * 10**9)  # any machine: 64 GB
    cfg = compose_config("train", overrides.split())
    # (on an accelerator its own memory is checked first)
    with pytest.raises(ZooError, match=TOO_BIG) as err:
        validate(cfg)
        build_run(cfg)
    if overrides == HUGE[-1]:  # every setting within its bounds: the estimate refuses
        assert "needs" in str(err.value)


def test_the_estimate_counts_state_data_and_batch_exactly_for_the_default_run():
    cfg = compose_config("train", [])
    data = data_module.make_dataset(cfg.data, cfg.model)
    from flax import nnx

    name, kwargs = model_kwargs(cfg.model)
    model = nnx.eval_shape(lambda: build_model(name, kwargs, 0))
    estimate = memory.check_training_fits(
        model, make_optimizer(cfg).tx, data, 256, [], log_points=21
    )
    params = 4 * 8 + 8  # floats
    assert estimate.state == 4 * (2 * params) + 4 * (1 + 2 * params)  # + grads, adam count, mu, nu
    assert estimate.data == 4 * 2560 * (4 + 8)
    assert estimate.batch == 256 * (4 * (4 + 8) + 4 + 8 * 4 * memory.ACTIVATION_COPIES)
    assert estimate.schedule == 21 * memory.LOG_POINT_BYTES


class FakeGpu:
    platform, id = "gpu", 0

    def memory_stats(self):
        return {"bytes_limit": 1000, "bytes_in_use": 400}


def test_an_accelerator_is_checked_with_the_data_it_already_holds():
    estimate = memory.TrainingEstimate(state=300, data=200, batch=200, schedule=0)
    with pytest.raises(ZooError, match=r"needs about 700 bytes on gpu:0 .* has 600 bytes free"):
        memory.require_training_fits(estimate, [FakeGpu()])
    gpu = FakeGpu()
    memory.require_training_fits(estimate, [gpu], resident={gpu: 200})  # the data is there


def test_a_summary_of_a_huge_model_allocates_nothing(capsys):
    print_summary(compose_config("eval", ["mode=summary", "model.hidden=1000000", "model.depth=3"]))
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", "2,000,007,000,000"]


# --- damaged run directories and the umask -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: [1, 2", "unreadable config (while parsing a flow sequence"),
        ("- 1\n- 2\n", "not a train run's config (a mapping with model, data)"),
    ],
)
def test_eval_of_a_run_whose_saved_config_is_damaged_is_one_line(tmp_path, text, message):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(text)
    with pytest.raises(ZooError) as err:
        evaluate_run(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / '.hydra' / 'config.yaml'}: {message}")


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
