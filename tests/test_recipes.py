"""Training recipes: optimizers, learning-rate schedules, weight-decay masks, clipping, gradient
accumulation, EMA of the weights, the best model and early stopping. In-process and small; the
SIGKILL-and-resume proof of all of them together is in tests/test_long_runs.py."""

from __future__ import annotations

import json
import logging
import logging.handlers
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import compose_config
from flax import nnx

import zoo
from zoo.build import build_run
from zoo.checkpoint import _changes
from zoo.config import validate
from zoo.data import make_dataset
from zoo.errors import ZooError
from zoo.loop import logged_metrics
from zoo.losses import loss_and_metrics
from zoo.monitor import Monitor
from zoo.optimizers import decay_mask, make_optimizer, make_schedule
from zoo.param_groups import param_groups, partition_optimizer
from zoo.training import train


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def flat(state) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


# --- a run with every recipe: the schedule in its log, the best model, early stopping ---------

# 16 noisy training rows and a wide model: the validation loss is best around step 40, then rises
OVERFITTING = [
    "data.n_train=16",
    "data.n_val=64",
    "data.noise=1.0",
    "model.hidden=128",
    "trainer.batch_size=16",
    "trainer.steps=300",
    "trainer.log_every=10",
    "trainer.eval_every=10",
    "trainer.ckpt_every=100",
    "trainer.patience=3",
    "trainer.ema=0.5",
    "optim.lr=0.03",
    "optim.schedule=cosine",
    "optim.warmup_steps=10",
    "optim.final_lr_fraction=0.1",
]


@pytest.fixture(scope="module")
def plateaued(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """OVERFITTING trained until patience stops it: (run dir, train()'s result, log lines)."""
    run_dir = tmp_path_factory.mktemp("plateaued")
    handler = logging.handlers.BufferingHandler(10_000)
    logging.getLogger("zoo").addHandler(handler)
    level = logging.getLogger("zoo").level
    logging.getLogger("zoo").setLevel(logging.INFO)
    try:
        result = train(compose_config("train", OVERFITTING), run_dir)
    finally:
        logging.getLogger("zoo").removeHandler(handler)
        logging.getLogger("zoo").setLevel(level)
    return run_dir, result, [r.getMessage() for r in handler.buffer]


def test_logged_lr_is_optax_warmup_cosine_at_the_last_step_before_each_record(plateaued):
    run_dir, _, _ = plateaued
    want = optax.warmup_cosine_decay_schedule(0.0, 0.03, 10, 300, end_value=0.003)
    logged = [(r["step"], r["lr"]) for r in records(run_dir)]
    assert [s for s, _ in logged] == list(range(10, logged[-1][0] + 1, 10))
    # float32, computed on the device inside the fused chunk: equal up to its rounding
    assert [lr for _, lr in logged] == pytest.approx([float(want(s - 1)) for s, _ in logged], 1e-6)
    assert logged[0][1] == pytest.approx(0.03 * 9 / 10)  # step 10 ran at count 9, warming up
    # step 70 ran at count 69, 59 of the 290 steps into the decay from 0.03 to 0.003
    step, lr = logged[6]
    assert step == 70 and lr == pytest.approx(0.003 + 0.027 * (1 + np.cos(np.pi * 59 / 290)) / 2)


def validation_losses(*model_dirs: Path) -> list[float]:
    """The validation loss of each saved model, on OVERFITTING's data."""
    cfg = compose_config("train", OVERFITTING)
    data = make_dataset(cfg.data, cfg.model)
    return [
        float(loss_and_metrics(data.task, zoo.from_pretrained(d)(data.x_val), data.y_val)[0])
        for d in model_dirs
    ]


def test_patience_stops_a_plateaued_run_and_best_holds_the_best_evaluation(plateaued):
    run_dir, result, log_lines = plateaued
    logged = records(run_dir)
    losses = [r["val_loss"] for r in logged]
    best, stop = min(losses), logged[-1]["step"]
    assert stop < 300 and losses.index(best) == len(losses) - 4  # then 3 without improvement
    assert any(
        line.startswith(f"early stopping at step {stop}: val_loss has not improved for 3 ")
        for line in log_lines
    )
    assert result["optimized_metric"] == best and result["step"] == stop
    # the run still ended normally: its final checkpoint, model/ and loss.png
    assert (run_dir / "checkpoints" / str(stop)).is_dir() and (run_dir / "loss.png").is_file()
    # best/ and model/ hold the weights validated (the EMA) at the best and at the last evaluation
    assert validation_losses(run_dir / "best", run_dir / "model") == pytest.approx(
        [best, losses[-1]], rel=1e-6
    )


def test_resuming_a_run_that_stopped_early_trains_no_further_and_knows_its_best(
    plateaued, tmp_path
):
    run_dir = Path(shutil.copytree(plateaued[0], tmp_path / "run"))
    again = train(compose_config("train", [*OVERFITTING, "trainer.resume=true"]), run_dir)
    assert records(run_dir) == records(plateaued[0])
    assert again["optimized_metric"] == plateaued[1]["optimized_metric"]


def test_the_monitor_keeps_the_best_either_way_and_counts_evaluations_without_progress():
    monitor = Monitor("val_accuracy", "max", patience=2)
    seen = [monitor.update({"step": s, "val_accuracy": v}, True) for s, v in [(1, 0.5), (2, 0.7)]]
    assert seen == [True, True] and (monitor.best, monitor.best_step) == (0.7, 2)
    assert not monitor.update({"step": 3, "train_loss": 9.0}, False)  # no evaluation: no count
    assert not monitor.update({"step": 4, "val_accuracy": 0.7}, True)  # equal is no progress
    assert not monitor.exhausted
    assert not monitor.update({"step": 5, "val_accuracy": 0.6}, True) and monitor.exhausted
    resumed = Monitor("val_accuracy", "max", patience=2)
    resumed.restore(json.loads(json.dumps(monitor.state())))  # as a checkpoint's meta holds it
    assert resumed.state() == monitor.state() and resumed.exhausted
    other = Monitor("val_loss", "min", patience=2)
    other.restore(monitor.state())  # another metric: tracked afresh
    assert other.best is None and other.optimized_metric != other.optimized_metric  # NaN


# --- schedules, weight decay, clipping ---------------------------------------------------------


def test_linear_and_constant_schedules_warm_up_then_hold_or_decay_to_the_final_fraction():
    base = ["trainer.steps=110", "optim.lr=0.2", "optim.warmup_steps=10"]
    linear = make_schedule(
        compose_config(
            "train", [*base, "optim.schedule=linear", "optim.final_lr_fraction=0.5"]
        ).optim,
        110,
    )
    assert [float(linear(c)) for c in (0, 5, 10, 60, 110)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.15, 0.1]
    )
    constant = make_schedule(compose_config("train", base).optim, 110)
    assert [float(constant(c)) for c in (0, 5, 10, 100)] == pytest.approx([0.0, 0.1, 0.2, 0.2])


def test_a_scheduled_optimizer_keeps_its_count_in_its_state_and_a_constant_one_does_not():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    cosine = make_optimizer(compose_config("train", ["optim.schedule=cosine"])).tx.init(params)
    paths = [str(path) for path, _ in jax.tree_util.tree_leaves_with_path(cosine)]
    assert sum("count" in p for p in paths) == 2  # adam's and the schedule's: resume is exact
    plain = make_optimizer(compose_config("train")).tx.init(params)
    assert jax.tree.structure(plain) == jax.tree.structure(optax.adam(0.01).init(params))


def test_resuming_with_more_steps_warns_only_when_a_schedule_spans_them():
    saved = {"optim": {"schedule": "cosine", "lr": 0.1}, "trainer": {"steps": 100}}
    longer = {"optim": {"schedule": "cosine", "lr": 0.1}, "trainer": {"steps": 200}}
    assert _changes(saved, longer) == ["trainer.steps: 100 -> 200"]
    saved["optim"]["schedule"] = longer["optim"]["schedule"] = "constant"
    assert _changes(saved, longer) == []  # a constant rate: extending the run changes nothing


def test_weight_decay_skips_biases_and_norm_scales_also_in_stacked_layers():
    model = nnx.eval_shape(  # shapes are all the mask needs
        lambda: zoo.create_model("transformer", vocab_size=8, d_model=8, rngs=nnx.Rngs(0))
    )
    mask = flat(decay_mask(nnx.state(model, nnx.Param)))
    decayed = sorted(k for k, v in mask.items() if v)
    assert "blocks/attn/query/kernel" in decayed and "embed/embedding" in decayed
    assert "head/kernel" in decayed
    kept = {k for k, v in mask.items() if not v}
    # stacked: blocks/attn_norm/scale and blocks/attn/query/bias have 2 dims, still not decayed
    assert {"blocks/attn_norm/scale", "blocks/attn/query/bias", "norm/scale", "head/bias"} <= kept
    assert all(k.endswith(("bias", "scale")) for k in kept)


@pytest.mark.parametrize(
    ("optim", "decay_all"),
    [("adamw", False), ("adamw", True), ("lion", False), ("adafactor", False)],
)
def test_with_zero_gradients_only_kernels_decay_unless_decay_all(optim, decay_all):
    params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4), "norm": {"scale": jnp.ones(4)}}
    zero = jax.tree.map(jnp.zeros_like, params)
    overrides = [f"optim={optim}", "optim.weight_decay=0.5", f"optim.decay_all={decay_all}"]
    tx = make_optimizer(compose_config("train", overrides)).tx
    updates = jax.jit(tx.update)(zero, tx.init(params), params)[0]
    changed = {
        "/".join(k.key for k in path)
        for path, u in jax.tree_util.tree_leaves_with_path(updates)
        if np.any(u != 0)
    }
    assert changed == ({"kernel", "bias", "norm/scale"} if decay_all else {"kernel"})


def test_clip_norm_bounds_the_update_and_leaves_small_gradients_alone():
    params = {"w": jnp.zeros(3)}
    overrides = ["optim=sgd", "optim.lr=1.0", "optim.momentum=0", "optim.clip_norm=0.5"]
    tx = make_optimizer(compose_config("train", overrides)).tx
    big, small = {"w": jnp.array([3.0, 4.0, 0.0])}, {"w": jnp.array([0.3, 0.0, 0.0])}
    update = tx.update(big, tx.init(params), params)[0]["w"]
    np.testing.assert_allclose(update, [-0.3, -0.4, 0.0], rtol=1e-6)  # norm 5 -> 0.5
    np.testing.assert_array_equal(tx.update(small, tx.init(params), params)[0]["w"], -small["w"])


@pytest.mark.parametrize("optim", ["adam", "adamw", "sgd", "lion", "rmsprop", "adafactor"])
def test_every_optimizer_fits_a_small_regression_in_a_few_steps(optim):
    x = jax.random.normal(jax.random.key(1), (64, 4))
    params = {"kernel": 0.5 * jax.random.normal(jax.random.key(2), (4, 1)), "bias": jnp.zeros(1)}
    y = x @ (params["kernel"] + 0.1) + 0.1  # a short way from the start, even for lion's steps
    tx = make_optimizer(compose_config("train", [f"optim={optim}"])).tx

    def loss(params):
        return jnp.mean((x @ params["kernel"] + params["bias"] - y) ** 2)

    @jax.jit
    def fit(params):
        def step(carry, _):
            params, opt_state = carry
            updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, tx.init(params)), length=30)[0][0]

    before, after = float(loss(params)), float(loss(fit(params)))
    assert after < 0.2 * before, (optim, before, after)


# --- parameter groups (optim.freeze, optim.lr_mult): what must see every group at once ---------

GROUPED_SGD = ["optim=sgd", "optim.lr=1.0", "optim.momentum=0", "data.n_train=8", "data.n_val=8"]


def one_hot_grads(params, values: dict[str, float]):
    """Zero gradients but `values[path]` in the first element of each parameter named."""
    grads = jax.tree.map(jnp.zeros_like, params)
    for path, value in values.items():
        variable = grads
        for key in path.split("/"):
            variable = variable[key]
        variable[...] = variable[...].at[(0,) * variable[...].ndim].set(value)
    return grads


def test_clip_norm_clips_all_trainable_groups_together_as_without_groups():
    # gradients 3 and 4 (norm 5), clip 1, bias at half the rate: (-0.6, -0.4), not (-1.0, -0.5)
    cfg = compose_config(
        "train",
        [*GROUPED_SGD, "model.depth=2", "optim.clip_norm=1", "optim.freeze=[blocks]"]
        + ["optim.lr_mult={middle/inner/bias:0.5}"],
    )
    run = build_run(cfg)
    params = run.state.params
    # the frozen kernel's gradient of 100 is never applied, and does not shrink the others
    grads = one_hot_grads(
        params, {"middle/inner/kernel": 3.0, "middle/inner/bias": 4.0, "blocks/inner/kernel": 100.0}
    )
    updates = flat(jax.jit(run.tx.update)(grads, run.state.opt_state, params)[0])
    assert updates["middle/inner/kernel"][0, 0] == pytest.approx(-0.6, rel=1e-6)
    assert updates["middle/inner/bias"][0] == pytest.approx(-0.4, rel=1e-6)
    assert not np.any(updates["blocks/inner/kernel"])
    assert sum(np.count_nonzero(u) for u in updates.values()) == 2


def bias_moved_after_100_clipped_sgd_steps(*overrides: str) -> float:
    cfg = compose_config(
        "train",
        [*GROUPED_SGD, "optim.lr=0.1", "optim.clip_norm=0.001", "data.n_train=64"]
        + ["trainer.batch_size=16", *overrides],
    )
    run = build_run(cfg)
    x, y, _, _ = run.data.arrays()
    before = flat(run.state.params)["middle/inner/bias"]
    state, *_ = run.train_chunk(run.state, x, y, length=100)
    return float(np.linalg.norm(flat(state.params)["middle/inner/bias"] - before))


def test_a_bias_at_a_thousandth_of_the_rate_moves_a_thousandth_as_far_under_clipping():
    plain = bias_moved_after_100_clipped_sgd_steps()
    slow = bias_moved_after_100_clipped_sgd_steps("optim.lr_mult={middle/inner/bias:0.001}")
    assert plain > 0
    assert slow / plain == pytest.approx(0.001, rel=0.01)  # clipped group by group: 0.0022


def test_lr_mult_factors_are_grouped_by_exact_value():
    params = nnx.state(zoo.create_model("deep_nested", rngs=nnx.Rngs(0)), nnx.Param)
    groups = param_groups(params, lr_mult={"middle/inner/bias": 1.000001})
    assert groups.label("middle/inner/bias") == "lr*1.000001" != groups.label("middle/inner/kernel")
    assert groups.describe().endswith("learning rate x 1.000001 for middle/inner/bias")
    tx = partition_optimizer(optax.sgd(1.0), groups)
    grads = one_hot_grads(params, {"middle/inner/kernel": 1.0, "middle/inner/bias": 1.0})
    updates = flat(tx.update(grads, tx.init(params), params)[0])
    assert updates["middle/inner/kernel"][0, 0] == -1.0
    assert updates["middle/inner/bias"][0] == np.float32(-1.000001)
    close = param_groups(params, lr_mult={"middle/inner/bias": 0.1 + 0.2, "middle": 0.3})
    assert len({close.label(p) for p in close.factors}) == 2  # 0.30000000000000004 and 0.3
    # the short labels that checkpoints of earlier runs hold are kept where they were exact
    assert [
        param_groups(params, lr_mult={"middle": f}).label("middle/inner/bias")
        for f in (0.5, 10, 1e-5)
    ] == ["lr*0.5", "lr*10", "lr*1e-05"]


def test_weight_decay_masks_apply_by_path_within_each_group():
    params = nnx.state(zoo.create_model("deep_nested", rngs=nnx.Rngs(0)), nnx.Param)
    zero = jax.tree.map(jnp.zeros_like, params)
    cfg = compose_config("train", ["optim=adamw", "optim.weight_decay=0.5", "optim.clip_norm=1"])
    plain, _, unclipped = make_optimizer(cfg)
    groups = param_groups(params, lr_mult={"middle/inner/kernel": 0.5, "middle/inner/bias": 2})
    grouped = partition_optimizer(unclipped, groups, clip_norm=1.0)
    want = flat(plain.update(zero, plain.init(params), params)[0])
    got = flat(grouped.update(zero, grouped.init(params), params)[0])
    assert np.any(want["middle/inner/kernel"]) and not np.any(want["middle/inner/bias"])
    np.testing.assert_allclose(got["middle/inner/kernel"], 0.5 * want["middle/inner/kernel"])
    assert not np.any(got["middle/inner/bias"])  # a bias is not decayed, in any group


def test_freezing_every_parameter_is_refused():
    params = nnx.state(zoo.create_model("deep_nested", rngs=nnx.Rngs(0)), nnx.Param)
    with pytest.raises(ZooError, match=r"optim.freeze=\[\*\*\] freezes all 2 parameter tensors"):
        param_groups(params, freeze=["**"], freeze_key="optim.freeze")
    with pytest.raises(ZooError, match="nothing would train"):
        param_groups(params, freeze=["middle/inner/kernel", "middle/inner/bias"])


# --- accumulation and EMA in the jitted step ---------------------------------------------------


@pytest.fixture(scope="module")
def accumulating():
    """Three updates of 4 accumulated batches of 8, with an EMA: the run, the configured seed,
    and the parameters and EMA before and after each update (copied to the host)."""
    overrides = ["trainer.batch_size=8", "trainer.accumulate=4", "trainer.ema=0.75"]
    cfg = compose_config("train", [*overrides, "data.n_train=256", "data.n_val=8"])
    run = build_run(cfg)
    x, y, _, _ = run.data.arrays()
    state, steps = run.state, [(flat(run.state.params), flat(run.state.ema), None)]
    for _ in range(3):
        state, loss, *_ = run.train_chunk(state, x, y, length=1)
        steps.append((flat(state.params), flat(state.ema), float(loss)))
    return run, cfg.seed, steps


def test_accumulating_4_batches_of_8_is_one_step_on_their_32_examples(accumulating):
    run, seed, steps = accumulating
    x, y, _, _ = run.data.arrays()
    params0 = nnx.state(run.model, nnx.Param)  # the model keeps the initial weights
    # by hand: the gradient of the mean loss over the 32 examples the step drew, one adam step
    idx = jax.random.randint(jax.random.fold_in(jax.random.key(seed), 0), (32,), 0, len(x))

    def mean_loss(params):
        model = nnx.merge(nnx.graphdef(run.model), params, nnx.state(run.model, nnx.Not(nnx.Param)))
        return loss_and_metrics("regression", model(x[idx]), y[idx])[0]

    want_loss, grads = jax.jit(jax.value_and_grad(mean_loss))(params0)
    updates, _ = run.tx.update(grads, run.tx.init(params0), params0)
    want = flat(optax.apply_updates(params0, updates))
    params1, _, loss = steps[1]
    assert loss == pytest.approx(float(want_loss), rel=1e-6)
    for key, value in params1.items():
        np.testing.assert_allclose(value, want[key], rtol=1e-5, atol=1e-7)
        assert not np.allclose(value, steps[0][0][key])


def test_ema_follows_the_parameters_with_its_decay(accumulating):
    _, _, steps = accumulating
    params, ema, _ = steps[0]
    assert all(np.array_equal(ema[k], params[k]) for k in ema)  # it starts at the initial weights
    for params, got, _ in steps[1:]:
        ema = {k: 0.75 * ema[k] + 0.25 * params[k] for k in ema}
        for key, value in got.items():
            np.testing.assert_allclose(value, ema[key], rtol=1e-6)
            assert not np.allclose(value, params[key])


# --- bad values --------------------------------------------------------------------------------


def test_a_monitor_that_is_not_logged_is_refused(accumulating):
    with pytest.raises(ZooError, match="^trainer.monitor=val_accuracy is not a logged metric; lo"):
        Monitor("val_accuracy", "max", None).check_logged(logged_metrics(accumulating[0]))
    assert logged_metrics(accumulating[0]) == {"train_loss", "lr", "val_loss"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.schedule=exponential"], "optim.schedule='exponential' is invalid: must be one of"),
        (["optim.final_lr_fraction=2"], "optim.final_lr_fraction=2.0 is invalid"),
        (
            ["optim.clip_norm=0"],
            "optim.clip_norm=0.0 is invalid: must be null or a finite number > 0",
        ),
        (["optim=adamw", "optim.weight_decay=-1"], "optim.weight_decay=-1.0 is invalid"),
        (["trainer.accumulate=0"], "trainer.accumulate=0 is invalid"),
        (["trainer.ema=1.0"], "trainer.ema=1.0 is invalid: must be null or a finite number > 0"),
        (["trainer.monitor_mode=best"], "trainer.monitor_mode='best' is invalid: must be one of"),
        (["trainer.patience=0"], "trainer.patience=0 is invalid"),
        (
            ["trainer.accumulate=4096", "trainer.batch_size=8192"],
            "trainer.accumulate \\* trainer.batch_size = 33554432 examples per update",
        ),
        (
            ["optim.schedule=cosine", "optim.warmup_steps=2000"],
            "optim.warmup_steps=2000 must be < trainer.steps=2000 with optim.schedule=cosine",
        ),
        (["optim.warmup_steps=3000"], "optim.warmup_steps=3000 is longer than trainer.steps=2000"),
    ],
)
def test_bad_recipe_values_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ZooError, match=message) as err:
        validate(compose_config("train", overrides))
    assert "\n" not in str(err.value)
