"""Recipes as config groups: experiment=<name> (what differs from the defaults) and the debug
presets, fast (a smoke test of any config) and profile (a jax.profiler trace)."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest
from conftest import CONFIGS, compose_config

from zoo.training.run import train

EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))


LOGGER_MODULES = ("zoo.loggers", "mlflow", "wandb", "tensorboardX", "optuna")


def test_the_experiments_are_the_documented_recipes():
    assert EXPERIMENTS == ["digits_mlp", "finetune_digits", "sequence_transformer"]
    cfg = compose_config("train", ["experiment=digits_mlp"])
    assert (cfg.model.name, cfg.data.name, list(cfg.model.widths)) == ("mlp", "digits", [128, 128])
    # the command line still wins over the recipe
    assert compose_config("train", ["experiment=digits_mlp", "optim.lr=0.5"]).optim.lr == 0.5


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
def test_every_experiment_runs_as_it_is_under_debug_fast(tmp_path, monkeypatch):
    """`train.py -m 'experiment=glob(*)' debug=fast`: every shipped recipe, given nothing more
    (finetune_digits starts from the digits mlp and parity data the zoo ships)."""
    from helpers import summary_rows, sweep_in_process
    from safetensors.numpy import load_file

    from zoo.config.store import recipe_file

    for name in LOGGER_MODULES:  # a run without loggers imports none of them
        monkeypatch.setitem(sys.modules, name, None)
    sweep = tmp_path / "sweep"
    code, stderr = sweep_in_process(sweep, "experiment=glob(*)", "debug=fast")
    assert code == 0, stderr
    rows = summary_rows(sweep)
    assert [(r["experiment"], r["status"]) for r in rows] == [(e, "ok") for e in EXPERIMENTS]
    for row in rows:
        job = sweep / row["job"]
        lines = (job / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["step"] for r in records] == [2, 4]
        assert [r["step"] for r in records if "val_loss" in r] == [4]  # one evaluation, at the end
        assert "val_accuracy" in records[-1]  # every recipe classifies
        assert (job / "model" / "model.safetensors").is_file()
        assert not (job / "checkpoints").exists() and not (job / "loss.png").exists()
        assert not (job / "profile").exists()
    # finetune_digits: the shipped digits body, frozen, under a new two-class head
    tuned = sweep / rows[EXPERIMENTS.index("finetune_digits")]["job"]
    report = json.loads((tuned / "init_report.json").read_text())
    assert report["excluded"] == ["head/bias", "head/kernel"] and len(report["loaded"]) == 4
    source = load_file(recipe_file("finetune_digits/digits_mlp/model.safetensors"))
    weights = load_file(str(tuned / "model" / "model.safetensors"))  # keys: layers.0.bias, ...
    for path in report["loaded"]:
        key = path.replace("/", ".")
        np.testing.assert_array_equal(weights[key], source[key], err_msg=path)
    assert weights["head.kernel"].shape == (64, 2)


def test_debug_profile_traces_fused_dispatches_for_perfetto_and_tensorboard(tmp_path):
    assert compose_config("train", ["debug=profile"]).trainer.profile_chunks == 3
    # the smallest trace: after the first dispatch (it compiles), the next one
    cfg = compose_config("train", ["debug=fast", "trainer.profile_chunks=1"])
    train(cfg, tmp_path)
    (trace_dir,) = (tmp_path / "profile" / "plugins" / "profile").iterdir()
    assert list(trace_dir.glob("*.xplane.pb"))  # what TensorBoard's profile plugin reads
    events = json.loads(gzip.decompress((trace_dir / "perfetto_trace.json.gz").read_bytes()))
    names = {event.get("name", "") for event in events["traceEvents"]}
    assert any("train_chunk" in name for name in names)
