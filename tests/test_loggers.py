"""The loggers people already use, read back through their own clients: MLflow's MlflowClient,
W&B's offline run file, TensorBoard's events and the CSV table."""

import csv
import json
import struct
import sys

import pytest
from conftest import compose_config
from test_reporting import read_scalars

from zoo.errors import ZooError
from zoo.loggers import open_loggers, run_context
from zoo.training import train


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


def test_every_logger_at_once_reads_back_every_metric_also_after_a_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default MLflow store is mlruns/ where the run started
    run_dir = tmp_path / "run"
    every = ["logger=[tensorboard,csv,mlflow,wandb]", "trainer.log_every=2", "trainer.eval_every=4"]
    last = train(compose_config("train", [*every, "trainer.steps=4"]), run_dir)
    last.pop("optimized_metric")
    records = jsonl(run_dir)
    assert [r["step"] for r in records] == [2, 4] and records[-1] == last
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
