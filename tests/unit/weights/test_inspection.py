"""Reading saved weights without training: checkpoint steps, run directories and pretrained
directories as sources, per-path (per-layer) statistics and differences against numpy's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from safetensors.numpy import load_file

import zoo
from zoo.app.cli import _eval_task
from zoo.models.common_settings import MAX_LAYERS
from zoo.training.build import build_model
from zoo.training.run import train
from zoo.weights.inspection import format_diff, format_inspection, inspection_lines
from zoo.weights.sources import open_source

RUN = [
    "model.depth=3",
    "trainer.steps=10",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=5",
]


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = pytest.mark.xdist_group("inspection")


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


DEPTH_3 = {"format_version": 1, "model": "deep_nested", "kwargs": {"in_features": 4, "depth": 3}}


def raw_pretrained(directory, header, config=DEPTH_3):
    """A pretrained directory whose safetensors header is written by hand, data-free."""
    directory.mkdir()
    data = json.dumps(header).encode()
    (directory / "model.safetensors").write_bytes(len(data).to_bytes(8, "little") + data)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def empty(shape):
    return {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}


def test_a_stacked_tensor_gets_at_most_max_layers_rows_and_others_one_row(tmp_path):
    # A model variable of 30,000 layers: 30,000 rows before; no model has more than MAX_LAYERS.
    tall = raw_pretrained(tmp_path / "tall", {"blocks.inner.kernel": empty([30_000, 0])})
    for action in (zoo.inspect_weights, lambda s: next(inspection_lines(s))):
        with pytest.raises(zoo.ZooError) as err:
            action(tall)
        assert str(err.value) == (
            f"{tall}/model.safetensors: blocks/inner/kernel of shape [30000, 0] has 30000 layers "
            f"on its stacked axis; a model has at most {MAX_LAYERS}"
        )
    with pytest.raises(zoo.ZooError, match="30000 layers"):
        zoo.diff_weights(tall, tall)
    # below a stacked module but no variable of the model: nothing says it has layers
    extra = raw_pretrained(tmp_path / "extra", {"blocks.inner.extra": empty([30_000, 0])})
    assert [(r.path, r.shape) for r in zoo.inspect_weights(extra)] == [
        ("blocks/inner/extra", (30_000, 0))
    ]
    layers = raw_pretrained(tmp_path / "layers", {"blocks.inner.bias": empty([MAX_LAYERS, 0])})
    assert len(zoo.inspect_weights(layers)) == MAX_LAYERS


def test_inspect_streams_its_table_the_widths_known_before_any_tensor_is_read(run, monkeypatch):
    source = open_source(run / "model")
    reads = []
    read = source.read
    monkeypatch.setattr(source, "read", lambda paths: reads.append(list(paths)) or read(paths))
    lines = inspection_lines(source)
    header, rule = next(lines), next(lines)
    assert reads == [] and header.split() == ["path", "shape", "dtype", "count", "mean", "std"] + [
        "min",
        "max",
        "l2",
        "nonfinite",
    ]
    streamed = [header, rule, *lines]
    assert reads and streamed == format_inspection(zoo.inspect_weights(run)).splitlines()
    assert len({len(line) for line in streamed}) == 1  # the widths fit every row


def test_a_shape_beyond_what_numpy_can_index_is_one_line_even_with_a_zero_dimension(tmp_path):
    # size 0 passed the size check, then numpy raised "Maximum allowed dimension exceeded"
    wide = raw_pretrained(tmp_path / "wide", {"blocks.inner.kernel": empty([0, 2**63])})
    with pytest.raises(zoo.ZooError) as err:
        zoo.inspect_weights(wide)
    assert str(err.value) == (
        f"{wide}/model.safetensors: unreadable weights ('blocks.inner.kernel' has shape "
        "[0, 9223372036854775808]: its nonzero dimensions make over 2^48 bytes)"
    )
    fine = raw_pretrained(tmp_path / "fine", {"middle.inner.kernel": empty([0, 2**30])})
    assert [r.shape for r in zoo.inspect_weights(fine)] == [(0, 2**30)]


def test_diff_shows_a_nan_difference_as_nan_and_dtypes_and_says_whether_they_differ():
    def mlp(dtype="float32"):
        return zoo.create_model(
            "mlp", in_features=2, widths=[3], param_dtype=dtype, rngs=nnx.Rngs(0)
        )

    a, b = mlp(), mlp()
    a.layers[0].kernel[...] = a.layers[0].kernel[...].at[0, 0].set(np.nan)
    diff = zoo.diff_weights(a, b)
    rows = {r.path: r for r in diff.rows}
    assert np.isnan(rows["layers/0/kernel"].max_abs) and np.isnan(rows["layers/0/kernel"].rel_l2)
    assert not diff.equal
    text = format_diff(diff).splitlines()
    assert text[-1] == "a and b differ: 1 of 4 compared in value"
    assert next(line for line in text if line.startswith("layers/0/kernel ")).split()[-2:] == [
        "nan",
        "nan",
    ]
    b.layers[0].kernel[...] = a.layers[0].kernel[...]  # NaN in both, at the same place: equal
    same = zoo.diff_weights(a, b)
    assert same.equal and {r.max_abs for r in same.rows} == {0}
    assert format_diff(same).splitlines()[-1] == "a and b are equal (4 tensors compared)"

    half = mlp("bfloat16")
    diff = zoo.diff_weights(mlp(), half, paths=["layers/0/bias"])  # zeros in both: equal values
    assert [r.max_abs for r in diff.rows] == [0] and not diff.equal
    assert format_diff(diff).splitlines()[-2:] == [
        "dtypes differ: layers/0/bias: float32 vs bfloat16",
        "a and b differ: 1 in dtype",
    ]


def test_eval_diff_exits_0_for_equal_sources_and_1_for_different_ones(run, capsys):
    _eval_task(zoo.compose(["mode=diff", f"a={run}", f"b={run / 'checkpoints' / '10'}"], "eval"))
    assert capsys.readouterr().out.splitlines()[-1] == "a and b are equal (6 tensors compared)"
    with pytest.raises(SystemExit) as exit_:
        _eval_task(zoo.compose(["mode=diff", f"a={run}", f"b={run / 'checkpoints' / '0'}"], "eval"))
    assert exit_.value.code == 1
    assert capsys.readouterr().out.splitlines()[-1] == "a and b differ: 6 of 6 compared in value"
