"""The training loop through the library and as the command line a user types."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from conftest import compose_config
from flax import nnx
from helpers import read_metrics

import zoo
from zoo.data.dataset import make_dataset
from zoo.training.loop import log_points
from zoo.training.run import train


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


@pytest.mark.parametrize("optim", ["adam", "adamw", "sgd"])
def test_every_optimizer_trains(tmp_path, optim):
    overrides = [f"optim={optim}", "trainer.steps=400", "trainer.eval_every=400"]
    cfg = compose_config("train", [*overrides, "trainer.plots=false"])  # no loss.png: ~0.5 s
    before = initial_val_loss(cfg)
    assert train(cfg, tmp_path)["val_loss"] < 0.5 * before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["init.from={tmp}/missing"], "missing: no such directory"),
        (["optim.freeze=[nothing/here]"], "optim.freeze pattern 'nothing/here' matches no"),
        (["optim.freeze=[**]"], "freezes all 2 parameter tensors"),
        (
            ["model=transformer", "data=sequence", "model.lora.rank=2", "model.lora.targets=[x]"],
            "model.lora.targets pattern 'x' matches no",
        ),
    ],
)
def test_a_run_refused_for_init_lora_or_groups_is_refused_before_its_model_is_built(
    tmp_path, monkeypatch, overrides, message
):
    # the refusal comes from the model's shapes alone: nothing compiled or allocated for it
    from zoo.errors import ZooError
    from zoo.training import build

    monkeypatch.setattr(build, "build_model", lambda *a, **k: pytest.fail("the model was built"))
    cfg = compose_config("train", [o.format(tmp=tmp_path) for o in overrides])
    with pytest.raises(ZooError, match=message):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
