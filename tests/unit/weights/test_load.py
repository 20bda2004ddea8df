"""Loading weights by path: strict reports, renames, include/exclude, stacked layers by layer."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import zoo
from zoo.optim.groups import param_groups, partition_optimizer
from zoo.weights.load import plan_load


def deep_nested(depth=1, seed=0, hidden=6, out_features=None):
    return zoo.create_model(
        "deep_nested",
        in_features=4,
        hidden=hidden,
        depth=depth,
        out_features=out_features,
        rngs=nnx.Rngs(seed),
    )


def weights(model) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.array(v[...]) for p, v in nnx.to_flat_state(nnx.state(model))}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_strict_loading_lists_every_difference_and_leaves_the_model_unchanged():
    source = nnx.state(deep_nested(depth=3, seed=1, out_features=2))
    del source["blocks"]["inner"]["bias"]  # missing
    source["middle"]["inner"]["extra"] = nnx.Param(np.zeros(3, np.float32))  # unexpected
    source["head"]["kernel"] = nnx.Param(np.zeros((6, 3), np.float32))  # other shape
    source["head"]["bias"] = nnx.Param(np.zeros(2, np.float16))  # other dtype
    model = deep_nested(depth=3, seed=2, out_features=2)
    before = weights(model)
    with pytest.raises(zoo.ZooError) as err:
        zoo.load_weights(model, source)
    assert str(err.value) == (
        "the given State does not fit the model (strict): 1 missing: blocks/inner/bias; "
        "1 unexpected: middle/inner/extra; 2 mismatched: "
        "head/bias (source float16[2], model wants float32[2]), "
        "head/kernel (source float32[6, 3], model wants float32[6, 2])"
    )
    assert_same(weights(model), before)

    report = zoo.load_weights(model, source, strict=False)
    assert report.loaded == ["blocks/inner/kernel", "middle/inner/bias", "middle/inner/kernel"]
    assert (report.missing, report.unexpected) == (["blocks/inner/bias"], ["middle/inner/extra"])
    assert report.mismatched == ["head/bias", "head/kernel"]
    after = weights(model)
    np.testing.assert_array_equal(after["middle/inner/kernel"], source["middle"]["inner"]["kernel"])
    for untouched in ["blocks/inner/bias", "head/bias", "head/kernel"]:
        np.testing.assert_array_equal(after[untouched], before[untouched])
    assert json.loads(report.to_json())["mismatched"] == ["head/bias", "head/kernel"]
    assert "  mismatched  head/kernel  (source float32[6, 3], model wants float32[6, 2])" in (
        report.table().splitlines()
    )


def test_rename_maps_source_paths_in_order():
    source = deep_nested(seed=1)
    state = nnx.state(source)
    state["stem"] = state.pop("middle")  # saved under another name
    model = deep_nested(seed=2)
    report = zoo.load_weights(model, state, rename=[(r"^stem/", "trunk/"), ("^trunk", "middle")])
    assert report.renamed == {
        "stem/inner/bias": "middle/inner/bias",
        "stem/inner/kernel": "middle/inner/kernel",
    }
    assert_same(weights(model), weights(source))
    report = zoo.load_weights(deep_nested(seed=3), state, rename={"stem": "middle"})  # a mapping
    assert report.ok
    with pytest.raises(zoo.ZooError, match=r"rename 'steam' matches no source path; nearest: stem"):
        zoo.load_weights(model, state, rename={"steam": "middle"})
    with pytest.raises(zoo.ZooError, match="rename maps both"):
        zoo.load_weights(model, state, rename={"kernel|bias": "w"})


def test_include_and_exclude_choose_what_takes_part():
    source = deep_nested(seed=1, out_features=3)
    model = deep_nested(seed=2, out_features=5)  # another head: exclude it
    before = weights(model)
    report = zoo.load_weights(model, source, exclude=["head"])
    assert report.ok and report.excluded == ["head/bias", "head/kernel"]
    after = weights(model)
    np.testing.assert_array_equal(after["head/kernel"], before["head/kernel"])
    np.testing.assert_array_equal(after["middle/inner/kernel"], source.middle.inner.kernel[...])

    report = zoo.load_weights(
        deep_nested(seed=2, out_features=5), source, include=["**/kernel"], strict=False
    )
    assert report.loaded == ["middle/inner/kernel"] and report.mismatched == ["head/kernel"]
    with pytest.raises(zoo.ZooError, match="include pattern 'hed' matches no path; nearest: head"):
        zoo.load_weights(model, source, include=["hed"], strict=False)


def test_growing_depth_from_1_fills_the_first_block_and_reports_the_stack_missing():
    shallow, deep = deep_nested(depth=1, seed=1), deep_nested(depth=4, seed=2)
    fresh_blocks = np.array(deep.blocks.inner.kernel[...])
    with pytest.raises(zoo.ZooError, match="2 missing: blocks/inner/bias, blocks/inner/kernel$"):
        zoo.load_weights(deep, shallow)
    report = zoo.load_weights(deep, shallow, strict=False)
    assert report.loaded == ["middle/inner/bias", "middle/inner/kernel"]
    assert report.missing == ["blocks/inner/bias", "blocks/inner/kernel"]
    np.testing.assert_array_equal(deep.middle.inner.kernel[...], shallow.middle.inner.kernel[...])
    np.testing.assert_array_equal(deep.blocks.inner.kernel[...], fresh_blocks)


def test_growing_depth_from_2_fills_the_first_stacked_layer_bitwise():
    source, model = deep_nested(depth=2, seed=1), deep_nested(depth=4, seed=2)
    fresh = np.array(model.blocks.inner.kernel[...])
    report = zoo.load_weights(model, source, strict=False)
    assert report.loaded == [
        "blocks/inner/bias[0:1]",
        "blocks/inner/kernel[0:1]",
        "middle/inner/bias",
        "middle/inner/kernel",
    ]
    assert report.missing == ["blocks/inner/bias[1:3]", "blocks/inner/kernel[1:3]"]
    kernel = np.asarray(model.blocks.inner.kernel[...])
    np.testing.assert_array_equal(kernel[0], source.blocks.inner.kernel[0])
    np.testing.assert_array_equal(kernel[1:], fresh[1:])


def test_shrinking_depth_needs_strict_false_and_reports_the_extra_layers_mismatched():
    source, model = deep_nested(depth=4, seed=1), deep_nested(depth=2, seed=2)
    with pytest.raises(zoo.ZooError, match=r"blocks/inner/kernel\[1:3\] \(the source has 3 layers"):
        zoo.load_weights(model, source)
    report = zoo.load_weights(model, source, strict=False)
    assert report.mismatched == ["blocks/inner/bias[1:3]", "blocks/inner/kernel[1:3]"]
    np.testing.assert_array_equal(model.blocks.inner.kernel[0], source.blocks.inner.kernel[0])


def test_a_leading_axis_outside_stacked_modules_is_a_plain_mismatch():
    source = zoo.create_model("mlp", in_features=4, widths=[8], rngs=nnx.Rngs(0))
    model = zoo.create_model("mlp", in_features=3, widths=[8], rngs=nnx.Rngs(0))
    report = zoo.load_weights(model, source, strict=False)
    assert report.mismatched == ["layers/0/kernel"]  # (4, 8) vs (3, 8), no layer axis here


def test_cast_loads_another_dtype_instead_of_mismatching():
    source = nnx.state(deep_nested(seed=1))
    source["middle"]["inner"]["kernel"] = nnx.Param(
        np.asarray(source["middle"]["inner"]["kernel"][...], np.float16)
    )
    model = deep_nested(seed=2)
    assert plan_load(model, source, strict=False).mismatched == ["middle/inner/kernel"]
    assert zoo.load_weights(model, source, cast=True).ok
    assert model.middle.inner.kernel[...].dtype == np.float32


def test_from_pretrained_with_a_new_head_keeps_the_body_and_reports_the_head(tmp_path):
    saved = deep_nested(depth=3, seed=1, out_features=2)
    zoo.save_pretrained(saved, tmp_path / "m")
    with pytest.raises(zoo.ZooError, match=r"2 mismatched: head/bias .*head/kernel"):
        zoo.from_pretrained(tmp_path / "m", out_features=5)
    model, report = zoo.from_pretrained(
        tmp_path / "m", out_features=5, strict=False, output_loading_info=True
    )
    assert zoo.model_spec(model)[1]["out_features"] == 5
    assert report.mismatched == ["head/bias", "head/kernel"]
    body = {k: v for k, v in weights(saved).items() if not k.startswith("head")}
    assert_same({k: v for k, v in weights(model).items() if not k.startswith("head")}, body)
    assert model.head.kernel.shape == (6, 5)
    assert isinstance(zoo.from_pretrained(tmp_path / "m"), nnx.Module)  # the default: a model
    with pytest.raises(zoo.ZooError, match="cannot build model 'deep_nested'.*out_featurs"):
        zoo.from_pretrained(tmp_path / "m", out_featurs=5)


def test_the_report_is_saved_as_json(tmp_path):
    report = zoo.load_weights(deep_nested(depth=3), deep_nested(depth=2), strict=False)
    path = report.save(tmp_path / "init_report.json")
    assert json.loads(path.read_text()) == report.to_dict()
    assert report.to_dict()["missing"] == ["blocks/inner/bias[1:2]", "blocks/inner/kernel[1:2]"]


def test_a_bad_source_is_one_line(tmp_path):
    (tmp_path / "run" / "checkpoints" / "40" / "state").mkdir(parents=True)
    (tmp_path / "file").write_text("")
    for source, message in [
        (tmp_path / "nowhere", "nowhere: no such directory"),
        (tmp_path / "file", "file: not a directory"),
        (42, "cannot read weights from a int"),
        (tmp_path, "not a source of weights; give a pretrained directory"),
        (tmp_path / "run", r"run: holds no saved model/ .* e\.g\. .*/run/checkpoints/40$"),
    ]:
        with pytest.raises(zoo.ZooError, match=message):
            zoo.load_weights(deep_nested(), source)


def test_frozen_parameters_get_no_update_and_no_state_and_factors_scale_the_rest():
    model = deep_nested(depth=3, seed=1, out_features=2)
    graphdef, params = nnx.split(model, nnx.Param)
    groups = param_groups(params, freeze=["middle", "blocks/**/bias"], lr_mult={"head/kernel": 10})
    assert groups.frozen == ["blocks/inner/bias", "middle/inner/bias", "middle/inner/kernel"]
    assert groups.describe().startswith("86 trainable parameters, 42 frozen (3 tensors: ")
    tx = partition_optimizer(optax.sgd(0.1, momentum=0.9), groups)
    opt_state = tx.init(params)
    traces = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]
    ]
    assert traces and not [t for t in traces if "middle" in t or "['blocks']['inner']['bias']" in t]

    def loss(p):
        return (nnx.merge(graphdef, p)(np.ones((3, 4), np.float32)) ** 2).sum()

    grads = jax.grad(loss)(params)
    updates, _ = tx.update(grads, opt_state, params)
    new = dict(nnx.to_flat_state(optax.apply_updates(params, updates)))
    for path, var in nnx.to_flat_state(params):
        changed = not np.array_equal(new[path][...], var[...])
        assert changed is ("/".join(path) not in groups.frozen)
    sgd = optax.sgd(0.1, momentum=0.9)
    plain, _ = sgd.update(grads, sgd.init(params), params)
    np.testing.assert_allclose(updates["head"]["kernel"][...], 10 * plain["head"]["kernel"][...])
    np.testing.assert_array_equal(updates["head"]["bias"][...], plain["head"]["bias"][...])


def test_no_freezing_keeps_the_optimizer_and_bad_patterns_or_factors_are_one_line():
    params = nnx.state(deep_nested(), nnx.Param)
    tx = optax.adam(1e-3)
    assert partition_optimizer(tx, param_groups(params)) is tx
    with pytest.raises(zoo.ZooError, match="optim.freeze pattern 'midle' matches no path"):
        param_groups(params, freeze=["midle"], freeze_key="optim.freeze")
    with pytest.raises(zoo.ZooError, match="factor -1 for 'middle' must be a positive number"):
        param_groups(params, lr_mult={"middle": -1})
