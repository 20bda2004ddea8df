"""Memory: sizes that cannot fit are one line before anything is allocated; the estimate counts
state, data and batch exactly."""

from __future__ import annotations

import pytest
from conftest import compose_config

from zoo import memory
from zoo.app.evaluation import print_summary
from zoo.config.validate import validate
from zoo.data import dataset as data_module
from zoo.errors import ZooError
from zoo.optim.optimizers import make_optimizer
from zoo.training import footprint
from zoo.training.build import build_model, build_run, model_kwargs

HUGE = [  # refused by a setting's upper bound, or else by the memory estimate
    "model.hidden=1000000000",
    "model.out_features=1000000000",
    "trainer.batch_size=100000000000",
    "data.n_train=10000000000",
    "trainer.steps=100000000000000",
    "model=mlp model.widths=[1000000000]",
    "model.depth=100000000",
    "model=mlp model.widths=[1000000,1000000]",
]


TOO_BIG = r"needs (about )?[\d.]+ [GTP]B (of memory|on \w+:0)|is invalid: must be .*<="


@pytest.mark.parametrize("overrides", HUGE)
def test_sizes_that_cannot_fit_are_one_line_before_anything_is_allocated(monkeypatch, overrides):
    monkeypatch.setattr(memory, "host_available", lambda: 64 * 10**9)  # any machine: 64 GB
    cfg = compose_config("train", overrides.split())
    # (on an accelerator its own memory is checked first)
    with pytest.raises(ZooError, match=TOO_BIG) as err:
        validate(cfg)
        build_run(cfg)
    if overrides == HUGE[-1]:  # every setting within its bounds: the estimate refuses
        assert "needs" in str(err.value)


def test_the_estimate_counts_state_data_and_batch_exactly_for_the_default_run():
    cfg = compose_config("train", [])
    data = data_module.make_dataset(cfg.data, cfg.model)
    from flax import nnx

    name, kwargs = model_kwargs(cfg.model)
    model = nnx.eval_shape(lambda: build_model(name, kwargs, 0))
    estimate = footprint.check_training_fits(
        model, make_optimizer(cfg).tx, data, 256, [], log_points=21
    )
    params = 4 * 8 + 8  # floats
    assert estimate.state == 4 * (2 * params) + 4 * (1 + 2 * params)  # + grads, adam count, mu, nu
    assert estimate.data == 4 * 2560 * (4 + 8)
    assert estimate.batch == 256 * (4 * (4 + 8) + 4 + 8 * 4 * footprint.ACTIVATION_COPIES)
    assert estimate.schedule == 21 * footprint.LOG_POINT_BYTES


class FakeGpu:
    platform, id = "gpu", 0

    def memory_stats(self):
        return {"bytes_limit": 1000, "bytes_in_use": 400}


def test_an_accelerator_is_checked_with_the_data_it_already_holds():
    estimate = footprint.TrainingEstimate(state=300, data=200, batch=200, schedule=0)
    with pytest.raises(ZooError, match=r"needs about 700 bytes on gpu:0 .* has 600 bytes free"):
        footprint.require_training_fits(estimate, [FakeGpu()])
    gpu = FakeGpu()
    footprint.require_training_fits(estimate, [gpu], resident={gpu: 200})  # the data is there


def test_a_summary_of_a_huge_model_allocates_nothing(capsys):
    print_summary(compose_config("eval", ["mode=summary", "model.hidden=1000000", "model.depth=3"]))
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", "2,000,007,000,000"]
