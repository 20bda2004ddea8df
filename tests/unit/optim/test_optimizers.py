"""Optimizers, schedules, weight-decay masks and clipping: every optimizer fits a regression."""

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
from zoo.optim.optimizers import decay_mask, make_optimizer, make_schedule


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
