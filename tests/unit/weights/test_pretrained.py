"""Pretrained files: round trips however a model was built, and tampered directories refused
with one clear error, nothing named by a file ever imported or called. (Saving in one process and
loading in another is tests/test_plugin.py's, in a venv holding only the wheel.)"""

from __future__ import annotations

import json
import os
import pickle
import sys

import hydra
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from helpers import edit_config
from safetensors.numpy import load_file, save_file

import zoo
from zoo.models.deep_nested.modeling import OuterModule

X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def flat_params(model):
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))}


def assert_same_model(a, b):
    pa, pb = flat_params(a), flat_params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])
    np.testing.assert_array_equal(a(X), b(X))


@pytest.fixture
def saved(tmp_path):
    """A saved depth-3 model with a head, and the model itself."""
    model = zoo.create_model(
        "deep_nested", in_features=4, hidden=6, depth=3, out_features=2, rngs=nnx.Rngs(5)
    )
    return zoo.save_pretrained(model, tmp_path / "pretrained"), model


BUILDS = {
    "create_model": lambda: zoo.create_model(
        "deep_nested", in_features=4, hidden=8, activation="tanh", rngs=nnx.Rngs(1)
    ),
    "class": lambda: OuterModule(4, 8, depth=2, out_features=3, rngs=nnx.Rngs(2)),
    "instantiate": lambda: hydra.utils.instantiate(
        compose_config("train", ["model.depth=4", "model.hidden=5"]).model, rngs=nnx.Rngs(3)
    ),
}


@pytest.mark.parametrize("build", BUILDS)
def test_round_trip_however_the_model_was_built(tmp_path, build):
    model = BUILDS[build]()
    zoo.save_pretrained(model, tmp_path / "m")
    loaded = zoo.from_pretrained(tmp_path / "m")
    assert type(loaded) is OuterModule
    assert zoo.model_spec(loaded) == zoo.model_spec(model)
    assert_same_model(loaded, model)


def test_files_hold_attribute_paths_and_the_registry_name(saved):
    directory, model = saved
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    tensors = load_file(str(directory / "model.safetensors"))
    assert sorted(tensors) == [
        "blocks.inner.bias",
        "blocks.inner.kernel",
        "head.bias",
        "head.kernel",
        "middle.inner.bias",
        "middle.inner.kernel",
    ]
    assert tensors["blocks.inner.kernel"].shape == (2, 6, 6)
    np.testing.assert_array_equal(tensors["middle.inner.kernel"], model.middle.inner.kernel[...])
    assert json.loads((directory / "config.json").read_text()) == {
        "format_version": 1,
        "model": "deep_nested",
        "kwargs": {
            "in_features": 4,
            "hidden": 6,
            "depth": 3,
            "activation": "relu",
            "out_features": 2,
            "dtype": "float32",
            "param_dtype": "float32",
        },
    }


def test_saving_again_replaces_the_previous_files_and_leaves_nothing_behind(tmp_path, saved):
    directory, _ = saved
    smaller = zoo.create_model("deep_nested", in_features=4, hidden=3, rngs=nnx.Rngs(0))
    zoo.save_pretrained(smaller, directory)
    assert_same_model(zoo.from_pretrained(directory), smaller)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained"]


def test_save_refuses_to_replace_a_directory_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    model = zoo.create_model("deep_nested", in_features=4, hidden=3, rngs=nnx.Rngs(0))
    with pytest.raises(zoo.ZooError, match="not a pretrained directory; not replacing it"):
        zoo.save_pretrained(model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_every_mismatch_is_reported_in_one_error(saved):
    directory, _ = saved
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    tensors["middle.inner.kernel"] = np.zeros((5, 6), np.float32)  # wrong shape
    tensors["head.bias"] = tensors["head.bias"].astype(np.float16)  # wrong dtype
    del tensors["blocks.inner.bias"]  # missing
    tensors["middle.extra"] = np.zeros(3, np.float32)  # unexpected
    save_file(tensors, str(path))
    with pytest.raises(zoo.ZooError) as err:
        zoo.from_pretrained(directory)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path} does not fit the model")
    for part in [
        "1 missing: blocks/inner/bias",
        "1 unexpected: middle/extra",
        "middle/inner/kernel (source float32[5, 6], model wants float32[4, 6])",
        "head/bias (source float16[2], model wants float32[2])",
    ]:
        assert part in message


def test_non_finite_weights_are_refused(saved):
    directory, _ = saved
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    tensors["head.kernel"] = np.full((6, 2), np.nan, np.float32)
    tensors["middle.inner.bias"][0] = np.inf
    save_file(tensors, str(path))
    with pytest.raises(zoo.ZooError, match="non-finite values in head/kernel, middle/inner/bias"):
        zoo.from_pretrained(directory)


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """A module that leaves a file behind if anything ever imports it or calls `boom`."""
    (tmp_path / "canary_site").mkdir()
    (tmp_path / "canary_site" / "zoo_canary.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(tmp_path / 'imported')!r}).touch()\n"
        "def boom(*args, **kwargs):\n"
        f"    pathlib.Path({str(tmp_path / 'called')!r}).touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "canary_site"))
    yield tmp_path
    assert not (tmp_path / "imported").exists() and not (tmp_path / "called").exists()
    assert "zoo_canary" not in sys.modules


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(model="zoo_canary.boom"), r"unknown model 'zoo_canary.boom'"),
        (lambda c: c.update(model="deep_nestd"), r"did you mean 'deep_nested'"),
        (lambda c: c.update(_target_="zoo_canary.boom"), r"names a _target_"),
        (lambda c: c["kwargs"].update(_target_="zoo_canary.boom"), r"names a _target_"),
        (
            lambda c: c["kwargs"].update(activation={"_target_": "zoo_canary.boom"}),
            r"argument activation=.* is not allowed",
        ),
        (lambda c: c["kwargs"].update(_partial_=True), r"argument _partial_=True is not allowed"),
        (lambda c: c.update(loader="zoo_canary.boom"), r"unexpected keys \['loader'\]"),
        (lambda c: c["kwargs"].update(activation="zoo_canary.boom"), r"activation='zoo_canary"),
        (lambda c: c["kwargs"].update(hidden=10**9), r"hidden=1000000000 is invalid"),
        (lambda c: c.update(format_version=2), r"format_version=2, this zoo reads 1"),
    ],
)
def test_tampered_config_is_refused_and_nothing_named_in_it_runs(saved, canary, change, message):
    directory, _ = saved
    edit_config(directory, change)
    with pytest.raises(zoo.ZooError, match=message) as err:
        zoo.from_pretrained(directory)
    assert str(directory / "config.json") in str(err.value) or "model.safetensors" in str(err.value)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d: (d / "model.safetensors").unlink(), r"model.safetensors: no such file"),
        (lambda d: (d / "config.json").unlink(), r"config.json: no such file"),
        (
            lambda d: (d / "model.safetensors").write_bytes(pickle.dumps({"a": 1})),
            r"unreadable weights",
        ),
        (
            lambda d: (d / "model.safetensors").write_bytes(
                (d / "model.safetensors").read_bytes()[:-10]
            ),
            r"unreadable weights",
        ),
        (lambda d: (d / "config.json").write_text("{not json"), r"unreadable config"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), r"expected a JSON object"),
    ],
)
def test_damaged_files_are_refused_with_a_clear_error(saved, tamper, message):
    directory, _ = saved
    tamper(directory)
    with pytest.raises(zoo.ZooError, match=message):
        zoo.from_pretrained(directory)


def replace_with(name, make):
    def tamper(directory):
        (directory / name).unlink()
        make(directory / name)

    return tamper


def widths_config(directory):
    edit_config(directory, lambda c: c["kwargs"].update(widths=[3] * 100_000, hidden=None))


def header_length(length):
    def tamper(directory):
        data = (directory / "model.safetensors").read_bytes()
        (directory / "model.safetensors").write_bytes(length.to_bytes(8, "little") + data[8:])

    return tamper


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (replace_with("config.json", lambda p: p.symlink_to("/dev/zero")), "not a regular file"),
        (replace_with("config.json", os.mkfifo), "config.json: not a regular file"),
        (replace_with("config.json", os.mkdir), "config.json: not a regular file"),
        (
            lambda d: (d / "config.json").write_text("[" * 100_000 + "]" * 100_000),
            "config.json: nested deeper than 16 levels",
        ),
        (
            lambda d: (d / "config.json").write_text('{"a": ' * 20 + "1" + "}" * 20),
            "config.json: nested deeper than 16 levels",
        ),
        (widths_config, r"config.json: a list of 100000 entries \(at most 256\)"),
        (
            lambda d: (d / "config.json").write_text('{"kwargs": {"hidden": ' + "9" * 5000 + "}}"),
            "config.json: unreadable config .*4300",
        ),
        (
            lambda d: (d / "config.json").write_text(" " * (1 << 20) + "{}"),
            "config.json: larger than 1048576 bytes",
        ),
        (
            replace_with("model.safetensors", lambda p: p.symlink_to("/dev/zero")),
            "model.safetensors: not a regular file",
        ),
        (replace_with("model.safetensors", os.mkfifo), "model.safetensors: not a regular file"),
        (header_length(2**62), "a header of 4611686018427387904 bytes in a file of"),
        (
            lambda d: (d / "model.safetensors").write_bytes(b"abc"),
            "a file of 3 bytes is no safetensors",
        ),
    ],
)
def test_hostile_files_are_refused_at_once_with_one_line(saved, tamper, message):
    directory, _ = saved
    tamper(directory)
    with pytest.raises(zoo.ZooError, match=message) as err:
        zoo.from_pretrained(directory)
    assert "\n" not in str(err.value)


def test_a_header_entry_whose_data_lies_outside_the_file_is_refused(saved):
    directory, _ = saved
    path = directory / "model.safetensors"
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header["head.bias"]["shape"] = [10**9, 10**9]  # would allocate 4 EB
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])
    with pytest.raises(zoo.ZooError, match="bad header entry for 'head.bias'"):
        zoo.from_pretrained(directory)


def test_save_refuses_a_model_outside_the_registry(tmp_path):
    linear = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(zoo.ZooError, match="Linear is not a registered zoo model"):
        zoo.save_pretrained(linear, tmp_path / "m")
    assert not (tmp_path / "m").exists()
