"""Reading saved weights without training: checkpoint steps, run directories and pretrained
directories as sources, per-path (per-layer) statistics and differences against numpy's."""

import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from safetensors.numpy import load_file

import zoo
from zoo.build import build_model
from zoo.inspection import format_diff, format_inspection
from zoo.training import train

RUN = [
    "model.depth=3",
    "trainer.steps=10",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=5",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A deep_nested depth-3 run (stacked blocks (2, 8, 8)) with checkpoints at 0, 5 and 10,
    started from the weights of the model its seed builds (a run from init.from saves step 0)."""
    run_dir = tmp_path_factory.mktemp("run")
    initial = build_model("deep_nested", {"in_features": 4, "hidden": 8, "depth": 3}, seed=0)
    zoo.save_pretrained(initial, run_dir.parent / "initial")
    overrides = [*RUN, "trainer.ckpt_every_seconds=0", f"init.from={run_dir.parent / 'initial'}"]
    train(compose_config("train", overrides), run_dir)
    return run_dir


def saved_tensors(run_dir):
    """The run's model/ tensors, read with safetensors itself, by state path."""
    tensors = load_file(str(run_dir / "model" / "model.safetensors"))
    return {key.replace(".", "/"): value for key, value in tensors.items()}


def test_a_checkpoint_step_loads_without_its_config_or_optimizer(run):
    # step 0 holds the initial parameters: those of a model built from the same seed
    initial = build_model("deep_nested", {"in_features": 4, "hidden": 8, "depth": 3}, seed=0)
    model = build_model("deep_nested", {"in_features": 4, "hidden": 8, "depth": 3}, seed=1)
    report = zoo.load_weights(model, run / "checkpoints" / "0")
    assert report.ok and len(report.loaded) == 4
    expected = dict(nnx.to_flat_state(nnx.state(initial)))
    for path, var in nnx.to_flat_state(nnx.state(model)):
        np.testing.assert_array_equal(var[...], expected[path][...])
    # the last step is the saved model; a run directory is its model/
    for source in [run / "checkpoints" / "10", run]:
        zoo.load_weights(model, source)
        for path, var in nnx.to_flat_state(nnx.state(model)):
            np.testing.assert_array_equal(var[...], saved_tensors(run)["/".join(path)])


def test_inspect_statistics_equal_numpys_with_one_row_per_stacked_layer(run):
    tensors = saved_tensors(run)
    for source in [run / "model", run / "checkpoints" / "10"]:
        rows = {row.path: row for row in zoo.inspect_weights(source)}
        assert sorted(rows) == [
            "blocks/inner/bias[0]",
            "blocks/inner/bias[1]",
            "blocks/inner/kernel[0]",
            "blocks/inner/kernel[1]",
            "middle/inner/bias",
            "middle/inner/kernel",
        ]
        for path, row in rows.items():
            name, _, layer = path.partition("[")
            value = tensors[name][int(layer[:-1])] if layer else tensors[name]
            value64 = value.astype(np.float64)
            assert (row.shape, row.dtype, row.count, row.nonfinite) == (
                value.shape,
                "float32",
                value.size,
                0,
            )
            np.testing.assert_allclose(
                [row.mean, row.std, row.min, row.max, row.l2],
                [
                    value64.mean(),
                    value64.std(),
                    value.min(),
                    value.max(),
                    np.linalg.norm(value64.ravel()),
                ],
                rtol=1e-12,
            )
    table = format_inspection(zoo.inspect_weights(run, paths=["blocks/**/kernel"]))
    assert [line.split()[0] for line in table.splitlines()[2:]] == [
        "blocks/inner/kernel[0]",
        "blocks/inner/kernel[1]",
    ]


def test_inspect_counts_non_finite_values_and_skips_them_in_the_statistics(tmp_path):
    model = zoo.create_model("mlp", in_features=2, widths=[3], rngs=nnx.Rngs(0))
    model.layers[0].kernel[...] = np.array([[1, 2, np.nan], [np.inf, -3, 0]], np.float32)
    (row,) = zoo.inspect_weights(model, paths=["layers/0/kernel"])
    assert (row.count, row.nonfinite, row.min, row.max, row.mean) == (6, 2, -3, 2, 0)
    with pytest.raises(
        zoo.ZooError, match="paths pattern 'layer' matches no path; nearest: layers"
    ):
        zoo.inspect_weights(model, paths=["layer"])


def test_diff_gives_numpys_differences_layer_by_layer_and_the_paths_in_one_only(run):
    before, after = run / "checkpoints" / "0", run / "checkpoints" / "10"
    initial = build_model("deep_nested", {"in_features": 4, "hidden": 8, "depth": 3}, seed=0)
    end = saved_tensors(run)
    diff = zoo.diff_weights(after, before)
    rows = {row.path: row for row in diff.rows}
    kernel_a, kernel_b = end["blocks/inner/kernel"][1], np.asarray(initial.blocks.inner.kernel[1])
    delta = kernel_a.astype(np.float64) - kernel_b
    np.testing.assert_allclose(rows["blocks/inner/kernel[1]"].max_abs, np.abs(delta).max())
    np.testing.assert_allclose(
        rows["blocks/inner/kernel[1]"].rel_l2, np.linalg.norm(delta) / np.linalg.norm(kernel_b)
    )
    assert rows["middle/inner/bias"].rel_l2 == np.inf  # biases start at zero: ||b|| = 0
    assert {r.rel_l2 for r in zoo.diff_weights(initial, before).rows} == {0}  # 0/0 is no difference

    shallow = zoo.create_model("deep_nested", in_features=4, hidden=8, depth=2, rngs=nnx.Rngs(0))
    shallow.blocks.inner.kernel[...] = end["blocks/inner/kernel"][:1]
    diff = zoo.diff_weights(after, shallow)
    assert diff.only_in_a == ["blocks/inner/bias[1]", "blocks/inner/kernel[1]"]
    assert {r.path: r.max_abs for r in diff.rows}["blocks/inner/kernel[0]"] == 0
    assert "only in a: blocks/inner/kernel[1]" in format_diff(diff).splitlines()
