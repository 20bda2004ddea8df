"""Recipes as config groups: experiment=<name> (what differs from the defaults) and the debug
presets, fast (a smoke test of any config) and profile (a jax.profiler trace)."""

import gzip
import json
import sys

import pytest
from conftest import CONFIGS, compose_config

from zoo.training import train

EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))
LOGGER_MODULES = ("zoo.loggers", "mlflow", "wandb", "tensorboardX", "optuna")


def test_the_experiments_are_the_documented_recipes():
    assert EXPERIMENTS == ["digits_mlp", "finetune_digits", "sequence_transformer"]
    cfg = compose_config("train", ["experiment=digits_mlp"])
    assert (cfg.model.name, cfg.data.name, list(cfg.model.widths)) == ("mlp", "digits", [128, 128])
    # the command line still wins over the recipe
    assert compose_config("train", ["experiment=digits_mlp", "optim.lr=0.5"]).optim.lr == 0.5


def finetune_inputs(directory) -> list[str]:
    """What the fine-tuning recipe asks of its user: a digits-shaped mlp to start from (saved,
    untrained: the recipe's plumbing is the point) and an .npz of their own classes."""
    import numpy as np
    from flax import nnx

    import zoo

    source = zoo.create_model("mlp", in_features=64, out_features=10, rngs=nnx.Rngs(0))
    zoo.save_pretrained(source, directory / "digits_model")
    rng = np.random.default_rng(0)
    np.savez(directory / "mine.npz", x=rng.normal(size=(60, 64)), y=rng.integers(0, 3, 60))
    return [f"init.from={directory / 'digits_model'}", f"data.path={directory / 'mine.npz'}"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_under_debug_fast(experiment, tmp_path, monkeypatch):
    for name in LOGGER_MODULES:  # a run without loggers imports none of them
        monkeypatch.setitem(sys.modules, name, None)
    inputs = finetune_inputs(tmp_path) if experiment == "finetune_digits" else []
    cfg = compose_config("train", [f"experiment={experiment}", "debug=fast", *inputs])
    last = train(cfg, tmp_path / "run")
    last.pop("optimized_metric")
    tmp_path = tmp_path / "run"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and records[-1] == last
    assert [r["step"] for r in records if "val_loss" in r] == [4]  # one evaluation, at the end
    assert "val_accuracy" in last  # both recipes classify
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "loss.png").exists()
    assert not (tmp_path / "profile").exists()


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
