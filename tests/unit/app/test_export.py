"""zoo-export: one StableHLO artifact per model gives the model's outputs (1e-6) at every batch
size (and sequence length), export.json carries the run's preprocessing, ONNX runs under
onnxruntime (1e-5) where jax2onnx is installed, and bad settings are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx
from omegaconf import OmegaConf

import zoo
from zoo.app.evaluation import run_config
from zoo.app.export import export
from zoo.data.dataset import make_dataset
from zoo.errors import ZooError

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

# tiny members of each family in main; deep_nested with its defaults is the seed's model
FAMILIES = {
    "mlp": {"in_features": 5, "widths": [16, 8], "out_features": 3},
    "transformer": {
        "vocab_size": 11,
        "d_model": 16,
        "num_heads": 2,
        "num_layers": 2,
        "max_len": 12,
    },
    "deep_nested": {},
}


def settings(**values):
    return OmegaConf.create(
        {"source": None, "out": None, "format": "stablehlo", "platforms": ["cpu", "cuda"]}
        | {"overwrite": False}
        | values
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each family's model, saved as a pretrained directory."""
    d = tmp_path_factory.mktemp("export")
    models = {}
    for name, kwargs in FAMILIES.items():
        model = zoo.create_model(name, rngs=nnx.Rngs(1), **kwargs)
        model.eval()
        zoo.save_pretrained(model, d / name)
        models[name] = model
    return d, models


def inputs(name: str, model, rows: int) -> np.ndarray:
    rng = np.random.default_rng(rows)
    if name == "transformer":
        return rng.integers(0, 11, size=(rows, 12)).astype(np.int32)
    return rng.normal(size=(rows, zoo.model_spec(model)[1]["in_features"])).astype(np.float32)


@pytest.mark.parametrize("name", FAMILIES)
def test_one_stablehlo_artifact_gives_the_models_outputs_at_every_batch_size(saved, name):
    d, models = saved
    export(settings(source=str(d / name), out=str(d / f"{name}.export")))
    exported = zoo.load_exported(d / f"{name}.export")
    meta = json.loads((d / f"{name}.export" / "export.json").read_text())
    assert meta["platforms"] == ["cpu", "cuda"] and meta["model"] == name
    assert meta["inputs"][0]["shape"][0] == "batch"
    model = nnx.jit(lambda model, x: model(x))  # the model, one program per shape as exported
    x = inputs(name, models[name], 64)
    # a transformer's 7 rows are shorter sequences than the others', from the same artifact
    batches = [x[:1], x[:7, :5] if name == "transformer" else x[:7], x]
    for batch in batches:
        got, want = np.asarray(exported(batch)), np.asarray(model(models[name], batch))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_export_json_carries_the_runs_standardization_and_preprocess_applies_it(tmp_path):
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    np.savez(tmp_path / "rows.npz", x=x, y=x @ [1.0, -1.0, 0.5, 2.0])
    cfg = zoo.compose(["model=mlp", "data=npz", f"data.path={tmp_path / 'rows.npz'}"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    model = zoo.create_model("mlp", rngs=nnx.Rngs(0), in_features=4, widths=[8])
    zoo.save_pretrained(model, tmp_path / "run" / "model")
    export(settings(source=str(tmp_path / "run"), out=str(tmp_path / "e"), platforms=["cpu"]))
    exported = zoo.load_exported(tmp_path / "e")
    assert exported.meta["task"] == "regression" and exported.signature["outputs"] == [
        {"name": "values", "shape": ["batch", 1], "dtype": "float32"}
    ]
    raw_cfg = OmegaConf.merge(run_config(tmp_path / "run"), {"data": {"standardize": False}})
    raw = np.asarray(make_dataset(raw_cfg.data, raw_cfg.model).x_val)
    standardized = np.asarray(make_dataset(cfg.data, cfg.model).x_val)
    assert np.abs(raw - standardized).min() > 0.01  # the scaling does something
    np.testing.assert_array_equal(exported.preprocess(raw), standardized)  # bit for bit
    np.testing.assert_allclose(
        np.asarray(exported(standardized)), np.asarray(model(standardized)), atol=1e-6, rtol=0
    )


def test_bad_export_settings_are_one_line_and_write_nothing(saved, tmp_path):
    d, _ = saved
    source = str(d / "mlp")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    cases = [
        (settings(source=source), "out is required"),
        (settings(source=str(tmp_path / "nope"), out=str(tmp_path / "a")), "no such directory"),
        (settings(source=str(d), out=str(tmp_path / "a")), "not a model directory"),
        (settings(source=source, out=str(tmp_path / "mine")), "is not an export directory"),
        (settings(source=source, out=str(tmp_path / "x" / "y")), "does not exist"),
        (settings(source=source, out=str(tmp_path / "a"), platforms=["gpu"]), "'gpu' is unknown"),
    ]
    for cfg, message in cases:
        with pytest.raises(ZooError, match=message):
            export(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    export(settings(source=source, out=str(tmp_path / "a"), platforms=["cpu"]))
    with pytest.raises(ZooError, match="exists; set overwrite=true"):
        export(settings(source=source, out=str(tmp_path / "a")))
    (tmp_path / "a" / "model.stablehlo").write_bytes(b"not flatbuffers")
    with pytest.raises(ZooError, match="not a readable StableHLO artifact"):
        zoo.load_exported(tmp_path / "a")
    with pytest.raises(ZooError, match="no such file"):
        zoo.load_exported(tmp_path / "mine")


@pytest.mark.parametrize("name", FAMILIES)
def test_the_onnx_export_runs_under_onnxruntime_within_1e_5(saved, name):
    pytest.importorskip("jax2onnx", reason="format=onnx needs the onnx extra")
    ort = pytest.importorskip("onnxruntime", reason="format=onnx needs the onnx extra")
    d, models = saved
    export(settings(source=str(d / name), out=str(d / f"{name}.onnx"), format="onnx"))
    session = ort.InferenceSession(str(d / f"{name}.onnx" / "model.onnx"))
    (feed,) = session.get_inputs()
    x = inputs(name, models[name], 64)
    want = np.asarray(models[name](x))
    for rows in (1, 7, 64):
        (got,) = session.run(None, {feed.name: x[:rows]})
        np.testing.assert_allclose(got, want[:rows], atol=1e-5, rtol=0)
