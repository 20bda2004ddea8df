"""Sharded training on 8 simulated devices (XLA's host device count, set before JAX starts, so
in one subprocess that runs every check): FSDP, tensor parallel and both give one device's
losses, each device holds its share of the state, a checkpoint saved under FSDP on 8 devices
restores bitwise on 4, and a bad mesh or an indivisible dimension is one line before
anything is allocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

EIGHT_DEVICES = {"XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=8"}
pytestmark = pytest.mark.xdist_group("sharded_devices")  # one worker runs the module's subprocess
# A tiny transformer learning to reverse sequences; one chunk length, so one program per layout.
TINY = [
    "experiment=sequence_transformer",
    "model.d_model=16",
    "model.num_heads=2",
    "data.n_train=256",
    "data.n_val=64",
    "trainer.batch_size=16",
    "trainer.steps=30",
    "trainer.log_every=15",
    "trainer.eval_every=15",
    "trainer.plots=false",  # loss.png is not what these compare
]

CHECKS = """
import json, logging, math, shutil, sys, tempfile
import jax
from hydra import compose, initialize_config_dir
from zoo.config.store import register_configs
from zoo.errors import ZooError
from zoo.memory import nbytes
from zoo.training.build import build_run
from zoo.training.run import train

logging.basicConfig(level=logging.INFO, format="%(message)s")
register_configs()
tiny, root = json.loads(sys.argv[1]), sys.argv[2]


def config(*overrides):
    with initialize_config_dir(config_dir=sys.argv[3], version_base="1.3"):
        return compose(config_name="train", overrides=[*tiny, *overrides])


def metrics(run_dir):
    with open(run_dir + "/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


import zoo.training.run
built = {}  # the run each train() built, to look at its state
out = {}
for name, overrides in [
    ("one", ["trainer.devices=1", "trainer.checkpoints=false"]),
    ("fsdp", ["parallel=fsdp"]),
    ("fsdp_tp", ["parallel=fsdp_tp", "trainer.checkpoints=false"]),
]:
    zoo.training.run.build_run = lambda cfg, name=name: built.setdefault(name, build_run(cfg))
    train(config(*overrides), f"{root}/{name}")
    out[name] = metrics(f"{root}/{name}")

# the checkpoint of the run under fsdp on 8 devices, restored on 4 (nothing left to train: the
# model written is the restored state); restoring on 1 device works the same way
zoo.training.run.build_run = build_run
shutil.copytree(f"{root}/fsdp", f"{root}/resumed", ignore=shutil.ignore_patterns("model"))
train(config("parallel=fsdp", "trainer.devices=4", "trainer.resume=true"), f"{root}/resumed")

# what each device holds of the parameters and optimizer state in the run under fsdp
# (by the arrays' own shardings: the first chunk of steps took over their buffers)
held = {}
for tree in (built["fsdp"].state.params, built["fsdp"].state.opt_state):
    for leaf in jax.tree.leaves(tree):
        for device, index in leaf.sharding.devices_indices_map(leaf.shape).items():
            size = math.prod(len(range(*i.indices(n))) for i, n in zip(index, leaf.shape))
            held[device.id] = held.get(device.id, 0) + size * leaf.dtype.itemsize
out["held"] = held
out["total"] = nbytes(built["fsdp"].state.params) + nbytes(built["fsdp"].state.opt_state)

# weights loaded into the sharded model land in its shardings (zoo.load_weights, init.from)
from zoo import load_weights
from zoo.paths import flat_variables
model = built["fsdp"].model
load_weights(model, f"{root}/one/model")
kernel = flat_variables(model)["blocks/mlp/layers/0/kernel"][...]
out["loaded"] = [list(kernel.sharding.spec), float(abs(kernel).sum())]

errors = []
for overrides in (
    ["parallel.mesh.data=3"],
    ["parallel=fsdp", "parallel.rules=[[positions/embedding,[fsdp,null]]]"],
):
    try:
        build_run(config(*overrides))
        errors.append(None)
    except ZooError as err:
        errors.append(str(err))
out["errors"] = errors
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[dict, str, object]:
    root = tmp_path_factory.mktemp("sharded")
    result = subprocess.run(
        [sys.executable, "-c", CHECKS, json.dumps(TINY), str(root), str(ROOT / "configs")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | EIGHT_DEVICES,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1]), result.stderr, root


def losses(records: list[dict]) -> np.ndarray:
    return np.array([[r["train_loss"], r["val_loss"]] for r in records])


@pytest.mark.parametrize("layout", ["fsdp", "fsdp_tp"])
def test_sharded_training_gives_one_devices_losses(sharded, layout):
    out, log, _ = sharded
    assert [r["step"] for r in out[layout]] == [15, 30]
    np.testing.assert_allclose(losses(out[layout]), losses(out["one"]), rtol=0, atol=1e-5)
    assert out["one"][1]["val_loss"] < out["one"][0]["val_loss"]  # it learns
    assert "mesh data=1 fsdp=8 tensor=1 over 8 cpu device(s)" in log
    assert "mesh data=1 fsdp=4 tensor=2 over 8 cpu device(s)" in log


def test_each_device_holds_an_eighth_of_parameters_and_optimizer_state(sharded):
    out, log, root = sharded
    assert len(out["held"]) == 8
    assert max(out["held"].values()) <= out["total"] / 8 * 1.05
    layout = json.loads((root / "fsdp" / "sharding.json").read_text())
    assert layout["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    assert layout["params"]["blocks/mlp/layers/0/kernel"] == {
        "shape": [2, 16, 64],
        "spec": [None, None, "fsdp"],
        "rule": "auto_fsdp",
    }
    assert "sharding: parameters and optimizer state" in log


def test_a_checkpoint_saved_on_8_devices_restores_bitwise_on_4(sharded):
    from safetensors.numpy import load_file

    _, _, root = sharded
    saved = load_file(root / "fsdp" / "model" / "model.safetensors")
    restored = load_file(root / "resumed" / "model" / "model.safetensors")
    assert restored.keys() == saved.keys()
    for key, value in saved.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


def test_weights_loaded_into_a_sharded_model_keep_its_sharding(sharded):
    from safetensors.numpy import load_file

    out, _, root = sharded
    one = load_file(root / "one" / "model" / "model.safetensors")["blocks.mlp.layers.0.kernel"]
    spec, total = out["loaded"]
    assert spec == [None, None, "fsdp"]
    assert total == pytest.approx(float(np.abs(one).sum()), rel=1e-6)


def test_a_bad_mesh_or_an_indivisible_dimension_is_one_line(sharded):
    out, _, _ = sharded
    assert out["errors"] == [
        "parallel.mesh={data: 3, fsdp: 1, tensor: 1} does not fit the run's 8 device(s): the "
        "sizes must multiply to 8",
        "parallel.rules[0] 'positions/embedding' on positions/embedding (shape [12, 16]): "
        "dimension 0 of size 12 does not divide over fsdp=8 devices; change the rule or "
        "parallel.mesh",
    ]
