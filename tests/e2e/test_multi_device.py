"""Data parallelism over several (simulated) devices and processes: the same numbers as one device,
and one line for a set-up that cannot work. Subprocesses with XLA's host device count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_config
from helpers import apps_in_one_process
from safetensors.numpy import load_file

from zoo.training.run import train

FOUR_DEVICES = {"XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=4"}


SHORT = [
    "trainer.steps=40",
    "trainer.log_every=10",
    "trainer.eval_every=20",
    "model.hidden=16",
    "trainer.plots=false",  # loss.png is not what these compare
]


# Trains in one process (JAX starts once) with each list of overrides; prints the metrics as JSON.
TRAIN_EACH = """
import json, logging, sys, tempfile
from hydra import compose, initialize_config_dir
from zoo.config.store import register_configs
from zoo.training.run import train

logging.basicConfig(level=logging.INFO, format="%(message)s")
register_configs()
results = []
for overrides in json.loads(sys.argv[1]):
    with initialize_config_dir(config_dir=sys.argv[2], version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir)
        with open(run_dir + "/metrics.jsonl") as f:
            results.append([json.loads(line) for line in f])

# The collectives XLA put into one fused chunk of steps on all devices.
import jax, jax.numpy as jnp, optax
from flax import nnx
from zoo.training import parallel
from zoo.models.deep_nested.modeling import OuterModule
from zoo.training.state import TrainState
from zoo.training.steps import make_steps


mesh = parallel.make_mesh("auto")
graphdef, params, rest = nnx.split(OuterModule(4, 8, rngs=nnx.Rngs(0)), nnx.Param, ...)
tx = optax.adam(1e-2)
state = TrainState(params, rest, tx.init(params), jnp.asarray(0), jax.random.key(0))
state, x, y = parallel.replicate((state, jnp.ones((64, 4)), jnp.ones((64, 8))), mesh)
train_chunk, _ = make_steps(graphdef, graphdef, tx, "regression", 32, mesh)
hlo = train_chunk.lower(state, x, y, length=3).compile().as_text()
ops = ["all-reduce(", "all-gather(", "all-to-all(", "reduce-scatter("]
state, *_ = train_chunk(state, x, y, length=3)
replicated = all(a.sharding.is_fully_replicated for a in jax.tree.leaves(state))
print(json.dumps([results, {op[:-1]: hlo.count(op) for op in ops}, replicated]))
"""


def train_each(*override_lists: list[str], env: dict[str, str]) -> tuple[list, str]:
    """Metrics of each run, and the collectives and state layout of a fused chunk of steps."""
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_EACH, json.dumps(override_lists), str(ROOT / "configs")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def losses(records: list[dict]) -> np.ndarray:
    return np.array([[r["train_loss"], r.get("val_loss", np.nan)] for r in records])


def test_four_devices_match_one_device_and_repeat_bitwise():
    ((one, four, again), collectives, replicated), log = train_each(
        [*SHORT, "trainer.devices=1"], SHORT, SHORT, env=FOUR_DEVICES
    )
    assert "data parallel over 1 cpu device(s)" in log
    assert "data parallel over 4 cpu device(s)" in log
    assert [r["step"] for r in four] == [10, 20, 30, 40]
    # The sum over the batch is split over devices, so float rounding differs from one device.
    np.testing.assert_allclose(losses(four), losses(one), rtol=1e-6)
    assert four == again  # bitwise: every value of a repeat run is identical
    assert four[-1]["val_loss"] < 0.5 * four[0]["train_loss"]  # it learns
    # Each device works on its own slice of the batch: one all-reduce (of the gradients and the
    # loss) per step, no gathering of the batch; parameters and optimizer state stay replicated.
    assert collectives["all-reduce"] >= 1
    assert collectives["all-gather"] == collectives["all-to-all"] == 0
    assert collectives["reduce-scatter"] == 0
    assert replicated


# Both set-ups that cannot work, run by zoo-train's own function in one child process (with 4
# devices): one interpreter and JAX start for the two. The distributed one comes first, while
# JAX has started nothing (jax.distributed.initialize() must come before any computation).
REFUSED = {
    "no coordinator": ["trainer.distributed=true"],
    "indivisible batch": ["trainer.batch_size=30"],
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """{case: (exit code, stdout, stderr, run directory)} of each REFUSED run."""
    work = tmp_path_factory.mktemp("refused")
    run_dirs = {case: work / f"run{i}" for i, case in enumerate(REFUSED)}
    cases = [("train", [*args, f"hydra.run.dir={run_dirs[c]}"]) for c, args in REFUSED.items()]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLA_FLAGS", FOUR_DEVICES["XLA_FLAGS"])
        results = apps_in_one_process(cases, work)
    return {c: (*r, run_dirs[c]) for c, r in zip(REFUSED, results, strict=True)}


@pytest.mark.xdist_group("multi_device_refused")  # the fixture's child runs once, on one worker
def test_batch_not_divisible_by_devices_is_refused_in_one_line(refused):
    code, _, stderr, run_dir = refused["indivisible batch"]
    assert code == 2
    assert stderr.strip() == (
        "error: trainer.batch_size=30 does not divide evenly over 4 devices; "
        "use a multiple of 4, or set trainer.devices"
    )
    assert not (run_dir / "metrics.jsonl").exists()


@pytest.mark.xdist_group("multi_device_refused")
def test_distributed_without_a_coordinator_says_what_to_set(refused):
    code, _, stderr, _ = refused["no coordinator"]
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: trainer.distributed: jax.distributed.initialize() failed")
    assert "trainer.coordinator_address" in lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_loopback_match_one_process(tmp_path):
    port = free_port()
    cluster = [
        "parallel=fsdp",  # issue 23: the parameters and optimizer state split over the processes
        "trainer.distributed=true",
        f"trainer.coordinator_address=127.0.0.1:{port}",
        "trainer.num_processes=2",
        f"trainer.ckpt_dir={tmp_path / 'checkpoints'}",  # shared by the processes
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *SHORT,
                *cluster,
                f"trainer.process_id={i}",
                f"hydra.run.dir={tmp_path / f'p{i}'}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:  # the one-process reference trains here meanwhile (no interpreter and JAX start)
        train(compose_config("train", SHORT), tmp_path / "single")
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:  # one that died leaves the other waiting for it
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "mesh data=1 fsdp=2 tensor=1 over 2 cpu device(s) in 2 processes" in outputs[0]
    assert "parameters and optimizer state 580 bytes per device (964 bytes in all)" in outputs[0]

    def metrics(run: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    # Only process 0 writes metrics and the model.
    assert not (tmp_path / "p1" / "metrics.jsonl").exists()
    assert not (tmp_path / "p1" / "model").exists()
    # each process locked the shared directory for itself; the checkpoints are the run's
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        ".lock.0",
        ".lock.1",
        "40",
    ]
    two, one = metrics("p0"), metrics("single")
    assert [r["step"] for r in two] == [r["step"] for r in one]
    np.testing.assert_allclose(losses(two), losses(one), rtol=1e-6)
    weights_two = load_file(tmp_path / "p0" / "model" / "model.safetensors")
    weights_one = load_file(tmp_path / "single" / "model" / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for key in weights_one:
        np.testing.assert_allclose(weights_two[key], weights_one[key], rtol=1e-5, atol=1e-6)
