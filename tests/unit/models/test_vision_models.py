"""ResNet and ViT: features by path against timm's forward_intermediates and against calling the
submodules by hand; BatchNorm's running statistics as state (train, eval, freeze_norm)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx

import zoo
from zoo.models.layers import scan_blocks
from zoo.models.resnet.modeling import Norm

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

VISION = ROOT / "tests" / "fixtures" / "vision"


@pytest.fixture(scope="module")
def resnet():
    return zoo.from_pretrained(VISION / "timm_resnet_basic")


def test_resnet_features_are_timms_intermediates_and_the_submodules_by_hand(resnet):
    ref = np.load(VISION / "timm_resnet_basic" / "reference.npz", allow_pickle=False)
    x = jnp.asarray(ref["images"])
    got = zoo.features(resnet, x, ["stem", "stages/*"])
    assert list(got) == ["stages/0", "stages/1", "stages/2", "stages/3", "stem"] or set(got) == {
        "stem",
        "stages/0",
        "stages/1",
        "stages/2",
        "stages/3",
    }
    np.testing.assert_allclose(got["stem"], ref["features/act1"], atol=1e-4, rtol=0)
    for s in range(4):
        np.testing.assert_allclose(
            got[f"stages/{s}"], ref[f"features/layer{s + 1}"], atol=1e-4, rtol=0
        )
    by_hand = resnet.stem(x)
    np.testing.assert_array_equal(got["stem"], by_hand)
    h = nnx.max_pool(by_hand, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(got["stages/0"], resnet.stages[0](h))
    assert type(resnet.stem).__name__ == "Stem" and type(resnet.stem).__mro__[1] is not nnx.Module


def test_vit_block_features_by_layer_are_timms_and_the_scan_by_hand():
    model = zoo.from_pretrained(VISION / "timm_vit")
    ref = np.load(VISION / "timm_vit" / "reference.npz", allow_pickle=False)
    x = jnp.asarray(ref["images"])
    got = zoo.features(model, x, ["blocks[1]", "blocks[0]", "patch_embed"])
    for i in range(2):
        np.testing.assert_allclose(got[f"blocks[{i}]"], ref[f"features/blocks.{i}"], atol=1e-4)
    tokens = model.tokens(x)
    np.testing.assert_array_equal(got["blocks[1]"], scan_blocks(model.blocks, tokens))
    assert got["patch_embed"].shape == (4, 4, 4, 32)
    stacked = zoo.features(model, x, "blocks")["blocks"]
    np.testing.assert_array_equal(stacked[1], got["blocks[1]"])


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["stagez"], "'stagez' names no module; nearest: stages"),
        (["stem[0]"], "stem is not a stack of layers"),
    ],
)
def test_bad_feature_paths_are_one_line(resnet, paths, message):
    with pytest.raises(zoo.ZooError, match=message):
        zoo.features(resnet, jnp.zeros((1, 32, 32, 3)), paths)


def test_features_inside_a_scanned_stack_name_the_layers_instead():
    model = zoo.from_pretrained(VISION / "timm_vit_avg")
    with pytest.raises(zoo.ZooError, match="inside the scanned stack blocks"):
        zoo.features(model, jnp.zeros((1, 32, 32, 3)), ["blocks/attn"])
    with pytest.raises(zoo.ZooError, match=r"blocks\[2\] is past the 2 layers"):
        zoo.features(model, jnp.zeros((1, 32, 32, 3)), ["blocks[2]"])


def test_running_statistics_update_in_training_only_and_freeze_norm_keeps_them(resnet):
    stats = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(resnet, nnx.BatchStat))}
    params = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(resnet, nnx.Param))}
    assert "stem/norm/mean" in stats and "stem/norm/scale" in params and not stats & params
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 2)) * 3 + 1
    forward = nnx.jit(lambda norm, x: norm(x))
    outputs = {}
    for frozen, mode in ((False, "eval"), (False, "train"), (True, "train")):
        norm = Norm(2, frozen=frozen, rngs=nnx.Rngs(0))
        norm.mean[...], norm.var[...] = jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5])
        getattr(norm, mode)()
        before = (np.asarray(norm.mean[...]), np.asarray(norm.var[...]))
        outputs[frozen, mode] = np.asarray(forward(norm, x))
        moved = [
            bool((np.asarray(v[...]) != b).any())
            for v, b in zip((norm.mean, norm.var), before, strict=True)
        ]
        assert moved == [mode == "train" and not frozen] * 2
        if moved[0]:  # PyTorch's momentum 0.1 on the batch's mean
            expected = 0.9 * before[0] + 0.1 * np.asarray(x).mean(axis=(0, 1, 2))
            np.testing.assert_allclose(norm.mean[...], expected, rtol=1e-6)
    np.testing.assert_array_equal(outputs[True, "train"], outputs[False, "eval"])
    assert np.abs(outputs[False, "train"] - outputs[False, "eval"]).max() > 1e-2


def test_features_work_for_every_zoo_model_the_seed_included():
    model = zoo.create_model("deep_nested", rngs=nnx.Rngs(0), in_features=3, hidden=4, depth=3)
    x = jnp.ones((2, 3))
    got = zoo.features(model, x, ["middle", "blocks"])
    np.testing.assert_array_equal(got["middle"], model.middle(x))
    assert got["blocks"].shape[:2] == (2, 2)  # depth 3: two stacked blocks, every layer's output
    np.testing.assert_array_equal(got["blocks"][-1], scan_blocks(model.blocks, got["middle"]))
