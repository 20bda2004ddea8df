"""Vision rows of `make bench` (issue 22): a ResNet's training images/s in the zoo's loop against a
hand-written `jax.jit` + optax step of the same model (BatchNorm statistics carried by hand), and
the image pipeline's images/s decoding with Pillow against reading its uint8 cache.

    python benchmarks/vision_bench.py   # prints markdown rows; make bench runs it after bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import fmt_time, side_by_side, zoo_run, zoo_step_fn  # noqa: E402

from zoo.data.images import decode_all  # noqa: E402
from zoo.training.steps import loss_and_metrics  # noqa: E402

BATCH, SIZE, IMAGES = 64, 32, 512


def write_images(root: Path, count: int, size: int = 64) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        files.append(folder / f"{i}.jpg")
        Image.fromarray(pixels).save(files[-1], quality=90)
    return files


def plain_resnet_step_fn(run):
    """Baseline (a): one `jax.jit` + optax step per call on the split model, the running
    statistics handed back by hand, batches sampled on the device as the zoo does."""
    model = run.model
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    tx, x, y, key = run.tx, run.data.x_train, run.data.y_train, jax.random.key(0)

    @jax.jit
    def step(params, rest, opt_state, i):
        idx = jax.random.randint(jax.random.fold_in(key, i), (BATCH,), 0, x.shape[0])

        def loss(p):
            m = nnx.merge(graphdef, p, rest, copy=True)
            value = loss_and_metrics("classification", m(x[idx]), y[idx])[0]
            return value, nnx.state(m, nnx.Not(nnx.Param))

        (value, rest), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, i + 1, value

    state = [params, rest, tx.init(params), jax.numpy.asarray(0)]

    def run_steps(steps: int) -> None:
        p, r, o, i = state
        for _ in range(steps):
            p, r, o, i, value = step(p, r, o, i)
        value.block_until_ready()
        state[:] = [p, r, o, i]

    return run_steps


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        files = write_images(Path(tmp) / "images", IMAGES)
        decode_times, cached_times = [], []
        for repeat in range(3):
            start = time.perf_counter()
            decode_all(files, SIZE, cache=False)
            decode_times.append(time.perf_counter() - start)
            if repeat == 0:
                decode_all(files, SIZE, cache=True)  # fills the cache
            start = time.perf_counter()
            pixels, _ = decode_all(files, SIZE, cache=True)
            np.asarray(pixels).sum()  # touch every byte of the memory map
            cached_times.append(time.perf_counter() - start)
        decoded, cached = (IMAGES / statistics.median(t) for t in (decode_times, cached_times))

        settings = [
            "model=resnet", "data=images", f"data.path={tmp}/images", f"data.image_size={SIZE}",
            f"trainer.batch_size={BATCH}", "trainer.log_every=20", "data.val_fraction=0.1",
        ]  # fmt: skip
        run = zoo_run(*settings)  # on the CPU: a dispatch a step (trainer.fuse_steps: null)
        fused_run = zoo_run(*settings, "trainer.fuse_steps=true")  # 20 steps in one lax.scan
        zoo, fused, plain = side_by_side(
            [zoo_step_fn(run), zoo_step_fn(fused_run), plain_resnet_step_fn(run)], 20, 3
        )
    print("| row | zoo | (a) plain jit | zoo vs (a) |")
    print("|---|---|---|---|")
    for what, seconds in [("default", zoo), ("trainer.fuse_steps=true", fused)]:
        print(
            f"| resnet ({what}, {SIZE}x{SIZE}, batch {BATCH}) train step | {fmt_time(seconds)} "
            f"({BATCH / seconds:.0f} images/s) | {fmt_time(plain)} "
            f"({BATCH / plain:.0f} images/s) | {plain / seconds:.2f}x |"
        )
    print(
        f"\nimage pipeline ({IMAGES} JPEGs 64x64 -> {SIZE}x{SIZE}): decoded {decoded:.0f} "
        f"images/s, from the cache {cached:.0f} images/s ({cached / decoded:.0f}x)"
    )


if __name__ == "__main__":
    main()
