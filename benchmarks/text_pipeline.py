"""Tokens per second of `data=text` (each chunk's windows read from the memory-mapped token file
on the host while the device runs the chunk before) against the same run on a device-resident
array of windows (the on-device sampling the other data sets use): the pipeline must not be the
bottleneck (>= 0.95x). Timed side by side, in turn, in one process.

    .venv/bin/python benchmarks/text_pipeline.py [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from hydra import compose, initialize_config_dir

from zoo.config.store import register_configs
from zoo.training import parallel
from zoo.training.build import build_run
from zoo.training.loop import run_chunks
from zoo.training.steps import make_steps

ROOT = Path(__file__).resolve().parents[1]


def text_run(cache: Path, length: int, batch: int, log_every: int, d_model: int):
    register_configs()
    overrides = [
        "model=transformer", "data=text", f"data.cache_dir={cache}", f"data.length={length}",
        f"model.d_model={d_model}", "model.num_heads=4", "model.num_layers=2",
        f"trainer.batch_size={batch}", f"trainer.log_every={log_every}", "trainer.steps=1000000",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return build_run(compose(config_name="train", overrides=overrides))


def resident_twin(run, windows: int):
    """The same run with `windows` training windows materialized on the device instead."""
    tokens = run.data.stream.windows(0, 1, (windows,))[0].astype("int32")
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    data = replace(run.data, x_train=x, y_train=y, stream=None)
    mesh = parallel.make_mesh("auto")
    graphdef = nnx.graphdef(run.model)  # as build_run splits it (train mode off: no dropout)
    rate = optax.constant_schedule(0.0)  # only logged; the optimizer is the run's own
    args = (graphdef, graphdef, run.tx, "classification", run.batch_size, mesh)
    train_chunk, _ = make_steps(*args, learning_rate=rate)
    return replace(run, data=data, train_chunk=train_chunk)


def seconds(run, steps: int, log_every: int) -> float:
    state = jax.tree.map(jnp.copy, run.state)
    points = list(range(log_every, steps + 1, log_every))
    start = time.perf_counter()
    for state, _ in run_chunks(replace(run, eval_every=10**9), state, points):  # noqa: B007, B020
        pass
    jax.block_until_ready(state)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        streamed = text_run(Path(cache), args.length, args.batch, args.log_every, args.d_model)
        resident = resident_twin(streamed, 4096)
        runs = {"memory map": streamed, "device array": resident}
        for run in runs.values():  # compile and warm up
            seconds(run, args.log_every, args.log_every)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(seconds(run, args.steps, args.log_every))
    tokens = args.steps * args.batch * args.length
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(f"transformer d_model {args.d_model}, 2 layers, length {args.length}, batch {args.batch}")
    for name, value in rate.items():
        print(f"{name:>12}: {value:,.0f} tokens/s")
    print(f"memory map vs device array: {rate['memory map'] / rate['device array']:.3f}x")


if __name__ == "__main__":
    main()
