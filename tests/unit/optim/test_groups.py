"""Parameter groups by path: freezing, exact learning-rate factors, clipping across groups, decay
masks within each group."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import compose_config
from flax import nnx
from helpers import flat

import zoo
from zoo.errors import ZooError
from zoo.optim.groups import param_groups, partition_optimizer
from zoo.optim.optimizers import make_optimizer
from zoo.training.build import build_run

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
