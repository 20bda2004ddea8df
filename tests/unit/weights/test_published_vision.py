"""timm and Hugging Face ResNet and ViT directories load through their conversion tables and give
the PyTorch originals' logits (tests/fixtures/vision, made by tools/make_vision_fixtures.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT
from flax import nnx

import zoo

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

VISION = ROOT / "tests" / "fixtures" / "vision"
TOLERANCE = 1e-4
forward = nnx.jit(lambda model, x: model(x))  # one program per model: cheaper than op by op


@pytest.mark.parametrize(
    "name",
    [
        "timm_resnet_basic",
        "timm_resnet_bottleneck",
        "hf_resnet",
        "timm_vit",
        "timm_vit_avg",
        "hf_vit",
    ],
)
def test_published_logits_match_pytorch(name):
    ref = np.load(VISION / name / "reference.npz", allow_pickle=False)
    model, report = zoo.from_pretrained(VISION / name, output_loading_info=True)
    assert report.ok and report.loaded
    np.testing.assert_allclose(forward(model, ref["images"]), ref["logits"], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["timm_vit", "hf_vit"])
def test_vit_at_another_size_resamples_positions_as_its_library(name):
    ref = np.load(VISION / name / "reference.npz", allow_pickle=False)
    model, report = zoo.from_pretrained(VISION / name, output_loading_info=True, image_size=48)
    assert "positions resampled 4x4 -> 6x6" in report.source
    np.testing.assert_allclose(model.positions[...], ref["pos_embed_48"][0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        forward(model, ref["images_48"]), ref["logits_48"], atol=TOLERANCE, rtol=0
    )


def test_new_head_keeps_the_body_and_reports_the_head():
    model, report = zoo.from_pretrained(
        VISION / "timm_vit_avg", strict=False, output_loading_info=True, out_features=3
    )
    assert report.mismatched == ["head/bias", "head/kernel"]
    assert model.head.kernel.shape == (32, 3)
    original = zoo.from_pretrained(VISION / "timm_vit_avg")
    np.testing.assert_array_equal(
        model.blocks.mlp.fc1.kernel[...], original.blocks.mlp.fc1.kernel[...]
    )
    with pytest.raises(zoo.ZooError, match="head/kernel"):
        zoo.from_pretrained(VISION / "timm_vit_avg", out_features=3)


def test_unknown_architecture_is_one_line(tmp_path):
    shutil.copytree(VISION / "timm_resnet_basic", tmp_path / "d")
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    config["architecture"] = "convnext_tiny"
    (tmp_path / "d" / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.ZooError, match="unknown architecture 'convnext_tiny'"):
        zoo.from_pretrained(tmp_path / "d")


def test_extra_published_tensor_is_unexpected(tmp_path):
    from safetensors.numpy import load_file, save_file

    shutil.copytree(VISION / "hf_vit", tmp_path / "d")
    tensors = load_file(tmp_path / "d" / "model.safetensors")
    tensors["vit.pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    save_file(tensors, tmp_path / "d" / "model.safetensors")
    with pytest.raises(zoo.ZooError, match="1 unexpected: vit.pooler.dense.weight"):
        zoo.from_pretrained(tmp_path / "d")
