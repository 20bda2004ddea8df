"""The steps: gradient accumulation is one step on the whole batch, EMA follows the parameters."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from conftest import compose_config
from flax import nnx
from helpers import flat

from zoo.errors import ZooError
from zoo.training.build import build_run
from zoo.training.loop import logged_metrics
from zoo.training.monitor import Monitor
from zoo.training.steps import loss_and_metrics

# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = pytest.mark.xdist_group("steps")


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


def test_a_monitor_that_is_not_logged_is_refused(accumulating):
    with pytest.raises(ZooError, match="^trainer.monitor=val_accuracy is not a logged metric; lo"):
        Monitor("val_accuracy", "max", None).check_logged(logged_metrics(accumulating[0]))
    assert logged_metrics(accumulating[0]) == {"train_loss", "lr", "val_loss"}


def test_a_dispatch_a_step_gives_the_fused_chunks_numbers():
    """trainer.fuse_steps=false runs each step as its own jitted call: the same updates and the
    same chunk outputs as one lax.scan over them (to float32 rounding: two programs)."""
    overrides = ["trainer.batch_size=8", "trainer.accumulate=2", "data.n_train=64"]
    results = []
    for fuse in ("true", "false"):
        run = build_run(compose_config("train", [*overrides, f"trainer.fuse_steps={fuse}"]))
        x, y, _, _ = run.data.arrays()
        state, *health = run.train_chunk(run.state, x, y, length=5)
        results.append((flat(state.params), [np.asarray(h) for h in health], int(state.step)))
    (fused, fused_health, fused_step), (single, single_health, single_step) = results
    assert fused_step == single_step == 5
    for key, value in fused.items():
        np.testing.assert_allclose(single[key], value, rtol=1e-5, atol=1e-7, err_msg=key)
    np.testing.assert_allclose(single_health[0], fused_health[0], rtol=1e-5)  # the mean loss
    assert [h.item() for h in single_health[1:3]] == [h.item() for h in fused_health[1:3]]


def test_convolutions_on_the_cpu_run_a_dispatch_a_step_unless_told():
    from zoo import create_model
    from zoo.training.build import fuse_steps
    from zoo.training.parallel import make_mesh

    mesh = make_mesh(1, None)
    resnet = create_model("resnet", layers=[1], widths=[4], stem_width=4, rngs=nnx.Rngs(0))
    mlp = create_model("mlp", rngs=nnx.Rngs(0))
    assert fuse_steps(None, resnet, mesh) is False  # XLA's CPU loop slows convolutions down
    assert fuse_steps(None, mlp, mesh) is True
    assert fuse_steps(True, resnet, mesh) is True and fuse_steps(False, mlp, mesh) is False
