"""The loggers people already use, read back through their own clients: MLflow's MlflowClient,
W&B's offline run file, TensorBoard's events and the CSV table."""

from __future__ import annotations

import csv
import json
import struct
import sys

import pytest
from conftest import compose_config
from helpers import read_scalars

from zoo.config import checks, fields, registry
from zoo.config.types import SettingError
from zoo.config.validate import validate
from zoo.errors import ZooError
from zoo.reporting.logger_settings import run_path_problem
from zoo.reporting.loggers import open_loggers
from zoo.reporting.run_context import run_context
from zoo.training.run import train


def jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def wandb_history(run_file):
    """{step: {key: value}} of every history record in a W&B offline `.wandb` file: LevelDB-log
    framing (32 KiB blocks; 7-byte header: crc, length, type) of wandb's protobuf Records."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = run_file.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B"
    at, chunk, history = 7, b"", {}
    while at + 7 <= len(data):
        if block - at % block < 7:  # a block's tail too short for a header is padding
            at += block - at % block
            continue
        length, kind = struct.unpack("<HB", data[at + 4 : at + 7])
        chunk += data[at + 7 : at + 7 + length]
        at += 7 + length
        if kind in (1, 4):  # FULL, LAST: a record is complete
            record = Record.FromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                step = int(items.pop("_step"))
                history[step] = {
                    k: json.loads(v) for k, v in items.items() if not k.startswith("_")
                }
    return history


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
def test_every_logger_at_once_reads_back_every_metric_also_after_a_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default MLflow store is mlruns/ where the run started
    run_dir = tmp_path / "run"
    every = ["logger=[tensorboard,csv,mlflow,wandb]", "trainer.log_every=2", "trainer.eval_every=4"]
    last = train(compose_config("train", [*every, "trainer.steps=4"]), run_dir)
    last.pop("optimized_metric")
    records = jsonl(run_dir)
    assert [r["step"] for r in records] == [2, 4] and records[-1] == last
    # no logger may be pointed at anything else the run wrote
    own = {"metrics.csv", "tensorboard"}
    assert [
        p.name for p in run_dir.iterdir() if p.name not in own and not run_path_problem(p.name)
    ] == []
    # a resume of that run at step 4: the same loggers' runs go on (without training again)
    later = [{"step": 6, "train_loss": 0.5}, {"step": 8, "train_loss": 0.25, "val_loss": 0.125}]
    cfg = compose_config("train", [*every, "trainer.steps=8", "trainer.resume=true"])
    loggers = open_loggers(cfg, run_dir, start=4)
    with open(run_dir / "metrics.jsonl", "a") as f:
        for record in later:
            f.write(json.dumps(record) + "\n")
            for logger in loggers:
                logger.log(record)
    for logger in loggers:
        logger.close("FINISHED", [])
    records += later

    # CSV: one row per record, a column per metric
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [{k: float(v) for k, v in row.items() if v} for row in rows] == records

    # MLflow: one run, every metric at its step, the config as params, the artifacts
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    run_id = run.info.run_id
    for key in ("train_loss", "val_loss"):
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert history == [(r["step"], r[key]) for r in records if key in r]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model.hidden"] == "8" and run.data.params["optim.name"] == "adam"
    assert {a.path for a in client.list_artifacts(run_id)} == {"loss.png", "config.yaml", "model"}
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {
        "model/config.json",
        "model/model.safetensors",
    }

    # W&B: offline in the run directory; the resume continues the same run id
    runs = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2 and len({path.name for path in runs}) == 1
    history = wandb_history(runs[0]) | wandb_history(runs[1])
    assert history == {r["step"]: {k: v for k, v in r.items() if k != "step"} for r in records}

    # TensorBoard as before
    scalars = [s for f in (run_dir / "tensorboard").iterdir() for s in read_scalars(f)]
    expected = [(k, r["step"], v) for r in records for k, v in r.items() if k != "step"]
    assert sorted(scalars) == pytest.approx(sorted(expected))


def test_a_missing_logger_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("train", ["logger=[csv,mlflow]"])
    for name in [m for m in sys.modules if m.split(".")[0] == "mlflow"] + ["mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ZooError) as caught:
        open_loggers(cfg, tmp_path)
    assert str(caught.value) == (
        "logger=mlflow needs mlflow: pip install 'zoo[mlflow]' (make install includes it)"
    )


def test_a_sweep_job_is_named_and_grouped_by_the_sweep_hydra_recorded(tmp_path):
    job = tmp_path / "multirun" / "day" / "time" / "lr" / "3"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  mode: MULTIRUN\n  sweep:\n    subdir: lr/${hydra.job.num}\n"
        f"  job:\n    num: 3\n  runtime:\n    cwd: {tmp_path}\n"
        "  overrides:\n    task: [optim.lr=0.1]\n"
    )
    context = run_context(job)
    assert (context.name, context.group) == ("multirun/day/time/lr/3", "multirun/day/time")
    assert context.overrides == ["optim.lr=0.1"]
    assert run_context(tmp_path).group is None  # a run from Python: no sweep


OUTSIDE_OR_OWN = [
    ("logger.csv.filename=../victim/metrics.jsonl", "must be a path inside the run directory"),
    ("logger.csv.filename=/tmp/elsewhere.csv", "no absolute path"),
    ("logger.csv.filename=~/m.csv", "no absolute path or ~"),
    ("logger.csv.filename=x\0.csv", "without NUL"),
    ("logger.csv.filename=", "must name a path inside the run directory"),
    ("logger.csv.filename=.", "hidden part"),
    ("logger.csv.filename=a//b.csv", "no empty"),
    ("logger.csv.filename=sub/../../x.csv", "'..'"),
    ("logger.csv.filename=.lock", "hidden part"),
    ("logger.csv.filename=metrics.jsonl", "the run itself writes 'metrics.jsonl' there"),
    ("logger.csv.filename=config.yaml", "the run itself writes 'config.yaml'"),
    ("logger.csv.filename=Model/weights.csv", "the run itself writes 'Model'"),  # case-blind
    ("logger.csv.filename=checkpoints/x.csv", "the run itself writes 'checkpoints'"),
    ("logger.csv.filename=train.log", "the run itself writes 'train.log'"),
    (f"logger.csv.filename={'x' * 256}.csv", "at most 255 bytes"),
    ("logger.tensorboard.subdir=metrics.jsonl", "the run itself writes 'metrics.jsonl'"),
    ("logger.tensorboard.subdir=best", "the run itself writes 'best'"),
    ("logger.tensorboard.subdir=../other_run", "must be a path inside the run directory"),
]


def test_a_logger_path_out_of_the_run_or_onto_its_own_files_is_one_line():
    for override, fragment in OUTSIDE_OR_OWN:  # the loggers' declarations check them
        key, _, value = override.partition("=")
        name, setting_name = key.split(".")[1:]
        declared = registry.declared("logger")[name]
        with pytest.raises(SettingError) as caught:
            checks.check_values(
                fields.settings_of(declared), {setting_name: value}, f"logger.{name}", declared
            )
        assert str(caught.value).startswith(f"{key}={value!r} is invalid: "), override
        assert fragment in str(caught.value), override
    # and so does the check of a composed config, before anything runs
    cfg = compose_config("train", ["logger=csv", "logger.csv.filename=../victim/metrics.jsonl"])
    with pytest.raises(SettingError, match="^logger.csv.filename='../victim/metrics.jsonl' is in"):
        validate(cfg)


def test_two_loggers_writing_one_path_are_one_line_and_folders_inside_the_run_are_fine():
    both = ["logger=[csv,tensorboard]", "logger.csv.filename=tb", "logger.tensorboard.subdir=tb/x"]
    with pytest.raises(SettingError, match="logger.csv.filename='tb' and logger.tensorboard"):
        validate(compose_config("train", both))
    fine = ["logger=[csv,tensorboard,mlflow]", "logger.csv.filename=logs/m.csv"]
    validate(compose_config("train", [*fine, "logger.tensorboard.subdir=logs/tb"]))


def test_every_name_the_run_writes_is_refused_as_a_logger_path(tmp_path):
    from zoo.app import job_status
    from zoo.reporting import loggers
    from zoo.training import init_from as finetune
    from zoo.training import run as training
    from zoo.training import run_dir as rundir

    written = [
        *rundir.RESULTS,
        *rundir.SWEEP_RESULTS,
        *rundir.SCAFFOLDING,
        rundir.LOCK,
        rundir.lock_name(3),
        training.RUN_CONFIG,
        finetune.INIT_REPORT,
        job_status.STATUS,
        job_status.TRACEBACK,
        loggers.RUN_IDS,
        "profile",  # trainer.profile_chunks
        "wandb",  # logger=wandb's own folder
        "train.log",  # Hydra's job log
    ]
    assert [name for name in written if run_path_problem(name) is None] == []


def test_a_csv_table_in_a_subfolder_creates_it(tmp_path):
    cfg = compose_config("train", ["logger=csv", "logger.csv.filename=logs/run/m.csv"])
    (logger,) = open_loggers(cfg, tmp_path)
    logger.log({"step": 2, "train_loss": 0.5})
    logger.close("FINISHED", [])
    assert (tmp_path / "logs" / "run" / "m.csv").read_text() == "step,train_loss\n2,0.5\n"


def test_a_logger_that_cannot_write_is_refused_before_the_run_writes_anything(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the default MLflow store is mlruns/ where the run started
    (tmp_path / "mlruns").write_text("not the store")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "elsewhere").mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tb").write_text("a file where the event files' folder goes")
    (run_dir / "out").symlink_to(tmp_path / "elsewhere")  # a link out of the run directory
    blocked = {
        "logger=mlflow": f"logger.mlflow.tracking_uri=null (the local store): {tmp_path}/mlruns "
        "is a file",
        f"logger=mlflow logger.mlflow.tracking_uri=sqlite:///{tmp_path}/afile/x.db": (
            f"lies under the file {tmp_path}/afile"
        ),
        f"logger=mlflow logger.mlflow.tracking_uri={tmp_path}/afile": f"{tmp_path}/afile is a file",
        "logger=tensorboard logger.tensorboard.subdir=tb": f"{run_dir}/tb is a file",
        "logger=csv logger.csv.filename=out/m.csv": "leads out of the run directory",
        f"logger=mlflow logger.mlflow.tracking_uri=sqlite:///{run_dir}/metrics.jsonl": (
            "is in the run directory: the run itself writes 'metrics.jsonl' there"
        ),
    }
    for overrides, fragment in blocked.items():
        cfg = compose_config("train", [*overrides.split(), "debug=fast"])
        with pytest.raises(ZooError) as caught:
            train(cfg, run_dir)
        assert fragment in str(caught.value), overrides
    # nothing written: a plain run into the directory is not refused afterwards
    assert sorted(p.name for p in run_dir.iterdir()) == ["out", "tb"]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_logger_that_fails_to_start_leaves_nothing_that_refuses_the_next_run(
    tmp_path, monkeypatch
):
    from zoo.reporting import loggers
    from zoo.training import run_dir as rundir

    def unreachable(self, settings, context, cfg, start):
        raise ZooError("logger=mlflow: cannot reach http://tracking.example:5000")

    monkeypatch.setattr(loggers.MLflow, "__init__", unreachable)  # a remote store, down
    cfg = compose_config("train", ["logger=mlflow", "debug=fast", "trainer.checkpoints=true"])
    with pytest.raises(ZooError, match="cannot reach"):
        train(cfg, tmp_path)
    assert rundir.earlier_results(tmp_path) == []  # a plain rerun is not refused


def test_a_run_with_a_logger_whose_library_is_missing_stops_before_writing_anything(
    tmp_path, monkeypatch
):
    cfg = compose_config("train", ["logger=wandb"])
    for name in [m for m in sys.modules if m.split(".")[0] == "wandb"] + ["wandb"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ZooError) as caught:
        train(cfg, tmp_path / "run")
    assert str(caught.value) == (
        "logger=wandb needs wandb: pip install 'zoo[wandb]' (make install includes it)"
    )
    assert not (tmp_path / "run").exists()
