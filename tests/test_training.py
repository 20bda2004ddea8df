"""The training loop through the library and as the command line a user types."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config, run_script
from flax import nnx

import zoo
from zoo.data import make_dataset
from zoo.loop import log_points
from zoo.training import train


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def initial_val_loss(cfg):
    data = make_dataset(cfg.data, cfg.model)
    model = zoo.create_model("deep_nested", in_features=4, hidden=8, rngs=nnx.Rngs(cfg.seed))
    return float(jnp.mean((model(data.x_val) - data.y_val) ** 2))


def test_log_points_cover_every_multiple_and_the_end():
    assert log_points(10, 4, 5) == [4, 5, 8, 10]
    assert log_points(0, 3) == []


def test_default_run_cuts_validation_loss_by_90_percent(tmp_path):
    cfg = compose_config()
    final = train(cfg, tmp_path)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(100, 2001, 100))
    assert {"step", "train_loss"} <= set(records[0]) and "val_loss" not in records[0]
    assert [r["step"] for r in records if "val_loss" in r] == [500, 1000, 1500, 2000]
    assert final == records[-1] | {
        "optimized_metric": min(r["val_loss"] for r in records if "val_loss" in r)
    }
    assert final["val_loss"] <= 0.1 * initial_val_loss(cfg)
    # seconds of training: ckpt_every_seconds (300) leaves only the save at the end; the run
    # locked its checkpoint directory as any run pointed at it does
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [".lock.0", "2000"]
    saved = zoo.from_pretrained(tmp_path / "model")
    x = jax.random.normal(jax.random.key(0), (3, 4))
    assert saved(x).shape == (3, 8)


@pytest.mark.slow
def test_same_config_and_seed_give_bit_identical_metrics(tmp_path):
    cfg = compose_config("train", ["trainer.steps=300", "trainer.eval_every=100"])
    for name in "ab":
        (tmp_path / name).mkdir()
        train(cfg, tmp_path / name)
    assert (tmp_path / "a/metrics.jsonl").read_bytes() == (
        tmp_path / "b/metrics.jsonl"
    ).read_bytes()
    other = compose_config("train", ["trainer.steps=300", "trainer.eval_every=100", "seed=1"])
    (tmp_path / "c").mkdir()
    train(other, tmp_path / "c")
    assert read_metrics(tmp_path / "c") != read_metrics(tmp_path / "a")


@pytest.mark.parametrize("optim", ["adam", "adamw", "sgd"])
def test_every_optimizer_trains(tmp_path, optim):
    cfg = compose_config("train", [f"optim={optim}", "trainer.steps=400", "trainer.eval_every=400"])
    before = initial_val_loss(cfg)
    assert train(cfg, tmp_path)["val_loss"] < 0.5 * before


@pytest.mark.slow
def test_cli_deeper_gelu_model_trains(tmp_path):
    result = run_script(
        "train.py",
        "model=deep_nested",
        "model.depth=4",
        "model.activation=gelu",
        "model.hidden=32",
        "trainer.steps=600",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    records = read_metrics(tmp_path)
    assert records[-1]["train_loss"] < 0.2 * records[0]["train_loss"]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["kwargs"]["depth"] == 4 and config["kwargs"]["activation"] == "gelu"
    assert "step=600" in (tmp_path / "train.log").read_text()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.depth=0", "model.depth"),
        ("model.depth=abc", "model.depth"),
        ("model.depht=3", "model.depht"),
        ("model.activation=swish2", "model.activation"),
        ("optim.lr=-1", "optim.lr"),
        ("optim=adagrad", "optim/adagrad"),
        ("trainer.batch_size=0", "trainer.batch_size"),
    ],
)
def test_cli_bad_value_exits_nonzero_with_one_line(tmp_path, override, key):
    result = run_script("train.py", override, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_eval_default_matches_the_seed_function():
    result = run_script("eval.py")
    assert result.returncode == 0, result.stderr
    assert "max_abs_diff = 0: match" in result.stdout
    result = run_script("eval.py", "seed=7", "model.hidden=5", "x=[1,2,3,4]")
    assert result.returncode == 0, result.stderr
    model_line = next(line for line in result.stdout.splitlines() if line.startswith("model"))
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
    result = run_script("eval.py", f"run_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    reported = float(result.stdout.split("val_loss = ")[1].split()[0])
    assert reported == pytest.approx(logged, rel=1e-5)


@pytest.mark.parametrize("args", [["run_dir=/nonexistent/run"], ["x=[1,2]"]])
def test_eval_bad_input_exits_nonzero_with_one_line(args):
    result = run_script("eval.py", *args)
    assert result.returncode != 0
    assert (
        result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    )
