"""zoo-predict's rows/s beside a hand-written batched `jax.jit` loop over the same rows, and an
exported StableHLO artifact's latency beside the in-process model (issue 25).

Side by side in one process, the same model and rows, medians of a few repeats after a warm-up:
  - predict from an .npz (the rows read a chunk at a time) against the loop over the array in
    memory, both writing the classes and probabilities;
  - predict from a .csv (parsed and checked cell by cell in chunks) against np.loadtxt + the loop;
  - `zoo.load_exported(...)(x)` against `jax.jit(model)(x)` at batch 1 and 256.

    python benchmarks/predict_bench.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from omegaconf import OmegaConf

import zoo
from zoo.app.export import export
from zoo.app.predict import predict

FEATURES, CLASSES, BATCH = 64, 10, 4096


def median_seconds(action, repeats: int = 3) -> float:
    action()  # warm-up: compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hand_written(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The batched loop a user would write: jit, pad the last batch, collect argmax and prob."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, xb):
        logits = nnx.merge(graphdef, state)(xb)
        probs = jax.nn.softmax(logits, axis=-1)
        classes = logits.argmax(-1)
        return classes, jnp.take_along_axis(probs, classes[:, None], -1)[:, 0]

    classes, probs = [], []
    for first in range(0, len(x), BATCH):
        xb = x[first : first + BATCH]
        n = len(xb)
        if n < BATCH:
            xb = np.concatenate([xb, np.zeros((BATCH - n, x.shape[1]), x.dtype)])
        c, p = step(state, xb)
        classes.append(np.asarray(c)[:n])
        probs.append(np.asarray(p)[:n])
    return {"class": np.concatenate(classes), "probability": np.concatenate(probs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    d = Path(tempfile.mkdtemp(prefix="predict_bench."))
    model = zoo.create_model(
        "mlp", rngs=nnx.Rngs(0), in_features=FEATURES, widths=[256, 256], out_features=CLASSES
    )
    model.eval()
    zoo.save_pretrained(model, d / "model")
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)
    np.savez(d / "rows.npz", x=x)
    np.savetxt(
        d / "rows.csv",
        x,
        delimiter=",",
        fmt="%.6g",
        header=",".join(f"f{i}" for i in range(FEATURES)),
        comments="",
    )
    x_csv = np.loadtxt(d / "rows.csv", delimiter=",", skiprows=1, dtype=np.float32)

    def zoo_predict(name: str):
        cfg = {"source": str(d / "model"), "input": str(d / name), "output": str(d / "out.npz")}
        cfg |= {"batch_size": BATCH, "top_k": 1, "overwrite": True, "task": "classification"}
        cfg |= {"target": None}
        return lambda: predict(OmegaConf.create(cfg))

    def loop_over_csv():
        hand_written(model, np.loadtxt(d / "rows.csv", delimiter=",", skiprows=1, dtype=np.float32))

    results = {
        "zoo-predict, .npz": median_seconds(zoo_predict("rows.npz")),
        "hand-written jit loop, array in memory": median_seconds(lambda: hand_written(model, x)),
        "zoo-predict, .csv": median_seconds(zoo_predict("rows.csv")),
        "hand-written: np.loadtxt + jit loop": median_seconds(loop_over_csv),
    }
    check = hand_written(model, x_csv)
    out = np.load(d / "out.npz")
    assert (out["class"] == check["class"]).all()
    print(f"\n{rows} rows x {FEATURES} features, mlp 64-256-256-10, batch {BATCH}, {jax.devices()}")
    for name, seconds in results.items():
        print(f"  {name:42s} {rows / seconds:12,.0f} rows/s")
    npz_ratio = results["hand-written jit loop, array in memory"] / results["zoo-predict, .npz"]
    csv_ratio = results["hand-written: np.loadtxt + jit loop"] / results["zoo-predict, .csv"]
    print(f"  zoo-predict / hand-written: npz {npz_ratio:.2f}x, csv {csv_ratio:.2f}x")

    cfg = {"source": str(d / "model"), "out": str(d / "export"), "format": "stablehlo"}
    export(OmegaConf.create(cfg | {"platforms": ["cpu"], "overwrite": True}))
    exported = zoo.load_exported(d / "export")
    jitted = nnx.jit(lambda m, xb: m(xb))
    for batch in (1, 256):
        xb = x[:batch]
        artifact = median_seconds(lambda xb=xb: exported(xb).block_until_ready(), 200)
        inproc = median_seconds(lambda xb=xb: jitted(model, xb).block_until_ready(), 200)
        print(
            f"  batch {batch:4d}: exported {artifact * 1e6:8.1f} us, in-process jit "
            f"{inproc * 1e6:8.1f} us ({inproc / artifact:.2f}x)"
        )


if __name__ == "__main__":
    main()
