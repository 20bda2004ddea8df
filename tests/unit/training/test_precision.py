"""Mixed precision: `model.dtype` (compute) and `model.param_dtype` (parameters) for every built-in
model. bfloat16 must train to within a stated tolerance of float32; float32 stays the seed's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from safetensors.numpy import load_file

import zoo
from zoo.checkpoint.manager import Checkpoints
from zoo.models.layers import InnerLinear
from zoo.training.build import build_run
from zoo.training.loop import run_chunks
from zoo.training.run import train
from zoo.training.steps import loss_and_metrics

# bfloat16 keeps 8 bits of mantissa: its final validation loss may differ from float32's by this
# fraction, and its validation accuracy by this many points.
LOSS_TOLERANCE = 0.10


ACCURACY_TOLERANCE = 0.02


def final_record(overrides: list[str], steps: int) -> tuple[dict, jax.ShapeDtypeStruct]:
    """The validation record after `steps` steps (one fused dispatch), and the shape and dtype of
    the model's output on the first validation inputs (traced, not run: nothing to compile)."""
    every = [f"trainer.{k}={steps}" for k in ("steps", "log_every", "eval_every")]
    run = build_run(compose_config("train", [*overrides, *every]))
    for state, record in run_chunks(run, run.state, [steps]):  # noqa: B007
        pass
    model = nnx.merge(nnx.graphdef(run.model), state.params, state.rest)
    return record, nnx.eval_shape(lambda model, x: model(x), model, run.data.x_val[:2])


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize(
    ("overrides", "steps", "converged"),
    [
        (["model=deep_nested"], 300, "val_loss"),  # teacher regression
        (["model=mlp", "data=digits", "model.widths=[32]"], 150, "val_accuracy"),
        (
            [
                "model=transformer", "data=sequence", "model.d_model=16", "model.num_heads=2",
                "model.num_layers=1", "data.length=6", "data.n_train=1024", "data.n_val=128",
                "trainer.batch_size=64", "optim.lr=0.01",
            ],
            100,  # both at val_accuracy 1.0 (from step 60), val_loss 0.0053 within 0.2%
            "val_accuracy",
        ),
    ],
    ids=["deep_nested-teacher", "mlp-digits", "transformer-sequence"],
)  # fmt: skip
def test_bfloat16_trains_every_builtin_model_to_within_tolerance_of_float32(
    overrides, steps, converged
):
    f32, out32 = final_record([*overrides, "model.dtype=float32"], steps)
    bf16, out16 = final_record([*overrides, "model.dtype=bfloat16"], steps)
    assert out32.dtype == jnp.float32 and out16.dtype == jnp.bfloat16  # it computed in bfloat16
    assert bf16 != f32  # ... so its numbers are its own
    assert abs(bf16["val_loss"] - f32["val_loss"]) <= LOSS_TOLERANCE * f32["val_loss"]
    if converged == "val_accuracy":
        assert f32["val_accuracy"] >= 0.9  # both learned the task, not just agreed
        assert abs(bf16["val_accuracy"] - f32["val_accuracy"]) <= ACCURACY_TOLERANCE
    else:
        assert f32["val_loss"] < 0.1


def test_layers_keep_parameters_in_param_dtype_and_compute_in_dtype():
    seed_layer = InnerLinear(4, 8, rngs=nnx.Rngs(3))
    bf16_params = InnerLinear(4, 8, rngs=nnx.Rngs(3), param_dtype=jnp.bfloat16)
    # float32 draws the seed's numbers; bfloat16 parameters are the same draw, rounded
    assert seed_layer.kernel.dtype == jnp.float32
    np.testing.assert_array_equal(
        bf16_params.kernel[...], seed_layer.kernel[...].astype(jnp.bfloat16)
    )
    x = jax.random.normal(jax.random.key(0), (2, 4))
    bf16_compute = InnerLinear(4, 8, rngs=nnx.Rngs(3), dtype=jnp.bfloat16)
    assert bf16_compute.kernel.dtype == jnp.float32  # parameters stay float32
    out = bf16_compute(x)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), seed_layer(x), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("name", ["deep_nested", "mlp", "transformer"])
def test_every_builtin_model_declares_both_dtypes_with_float32_defaults(name):
    settings = {s.name: s for s in zoo.model_settings(name)}
    for key in ("dtype", "param_dtype"):
        assert settings[key].default == "float32"
        assert settings[key].rule.choices == ("float32", "bfloat16", "float16")
    with pytest.raises(zoo.ZooError, match="model.dtype='int8' is invalid: must be one of"):
        zoo.create_model(name, dtype="int8", rngs=nnx.Rngs(0))


def test_losses_are_computed_in_float32_from_low_precision_outputs():
    out = jnp.array([[0.1, 2.0, -1.0], [1.5, 0.2, 0.3]], jnp.bfloat16)
    labels = jnp.array([1, 0])
    loss, metrics = loss_and_metrics("classification", out, labels)
    expected, _ = loss_and_metrics("classification", out.astype(jnp.float32), labels)
    assert loss.dtype == jnp.float32 and loss == expected
    assert metrics["accuracy"] == 1.0
    mse, _ = loss_and_metrics("regression", out, jnp.zeros((2, 3)))
    assert mse.dtype == jnp.float32


def test_a_bfloat16_run_saves_float32_parameters_and_checkpoints(tmp_path, caplog):
    caplog.set_level("INFO")
    # the bfloat16 deep_nested run of the test above, whose compiled programs it loads
    every = [f"trainer.{k}=300" for k in ("steps", "log_every", "eval_every")]
    overrides = ["model=deep_nested", "model.dtype=bfloat16", *every, "trainer.plots=false"]
    cfg = compose_config("train", overrides)
    train(cfg, tmp_path)
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert {str(t.dtype) for t in saved.values()} == {"float32"}
    with Checkpoints(tmp_path / "checkpoints", 3, cfg) as ckpts:
        state = ckpts.restore(build_run(cfg).state)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    loaded = zoo.from_pretrained(tmp_path / "model")
    assert zoo.model_spec(loaded)[1]["dtype"] == "bfloat16"
    assert nnx.eval_shape(lambda m, x: m(x), loaded, jnp.ones((1, 4))).dtype == jnp.bfloat16
    # every run says where it runs
    assert "data parallel over 1 cpu device(s) (backend cpu: cpu)" in caplog.text


def test_bfloat16_parameters_are_saved_as_such_and_cast_on_load(tmp_path):
    model = zoo.create_model("mlp", widths=[8], param_dtype="bfloat16", rngs=nnx.Rngs(0))
    zoo.save_pretrained(model, tmp_path / "bf16")
    saved = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert {str(t.dtype) for t in saved.values()} == {"bfloat16"}
    assert zoo.from_pretrained(tmp_path / "bf16").layers[0].kernel.dtype == jnp.bfloat16

    as_f32 = zoo.from_pretrained(tmp_path / "bf16", dtype="float32")
    assert zoo.model_spec(as_f32)[1]["param_dtype"] == "float32"
    kernel = as_f32.layers[0].kernel[...]
    assert kernel.dtype == jnp.float32
    np.testing.assert_array_equal(kernel, model.layers[0].kernel[...].astype(jnp.float32))
    with pytest.raises(zoo.ZooError, match=r"from_pretrained\(dtype='int8'\): not a floating"):
        zoo.from_pretrained(tmp_path / "bf16", dtype="int8")
