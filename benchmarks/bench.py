"""`make bench`: the zoo's training loop beside hand-written JAX and the Flax tutorial loop.

Every comparison runs in this one process, side by side, on the same data, the same initial
parameters and the same on-device batch sampling; each figure is the median of several repeats
after a warm-up. Writes benchmarks/RESULTS.md and prints the same table.

    python benchmarks/bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from transformer_baseline import forward as transformer_forward
from transformer_baseline import transformer_params

from zoo.build import Run, build_run
from zoo.loop import run_chunks
from zoo.losses import loss_and_metrics

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # name: (hidden, depth, batch)
    "seed": (8, 1, 256),
    "mid": (256, 4, 512),
    "large": (1024, 8, 1024),
}
LOG_EVERY = 100  # steps fused into one dispatch, as in the default config


def zoo_run(*overrides: str) -> Run:
    """The zoo's own prepared run for the train config with these overrides."""
    from hydra import compose, initialize_config_dir

    from zoo.config import register_configs

    register_configs()
    # No evaluation inside the timed window: the baselines do not evaluate either.
    timing = ["trainer.steps=1000000000", "trainer.eval_every=1000000000"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*timing, *overrides])
    return build_run(cfg)


def deep_nested_run(hidden: int, depth: int, batch: int, log_every: int = LOG_EVERY) -> Run:
    return zoo_run(
        f"model.hidden={hidden}",
        f"model.depth={depth}",
        f"trainer.batch_size={batch}",
        f"trainer.log_every={log_every}",
    )


def transformer_run(d_model: int, batch: int, log_every: int = LOG_EVERY) -> Run:
    return zoo_run(
        "model=transformer",
        "data=sequence",
        f"model.d_model={d_model}",
        f"trainer.batch_size={batch}",
        f"trainer.log_every={log_every}",
    )


# --- baselines: the same math, data, initial parameters and batch sampling --------------------


def deep_nested_math(params: dict, x: jax.Array) -> jax.Array:
    """Hand-written deep_nested forward: relu blocks, the later ones stacked and scanned."""
    h = jax.nn.relu(x @ params["w0"] + params["b0"])
    if "w" in params:
        h, _ = jax.lax.scan(
            lambda h, wb: (jax.nn.relu(h @ wb[0] + wb[1]), None), h, (params["w"], params["b"])
        )
    return h


def plain_jax_step_fn(run: Run, params: dict, forward: Callable) -> Callable[[int], None]:
    """Baseline (a): one `jax.jit` + optax step per Python call, on a plain parameter dict and a
    hand-written `forward(params, x)`."""
    tx, batch, task = run.tx, run.batch_size, run.data.task
    x, y = run.data.x_train, run.data.y_train
    key = jax.random.key(0)

    @jax.jit
    def step(params, opt_state, i, x, y):
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, x.shape[0])
        loss, grads = jax.value_and_grad(
            lambda p: loss_and_metrics(task, forward(p, x[idx]), y[idx])[0]
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, i + 1, loss

    state = [params, tx.init(params), jnp.asarray(0)]

    def run_steps(steps: int) -> None:
        p, o, i = state
        for _ in range(steps):
            p, o, i, loss = step(p, o, i, x, y)
        loss.block_until_ready()
        state[:] = [p, o, i]

    return run_steps


def deep_nested_baseline(run: Run) -> Callable[[int], None]:
    model = run.model
    params = {"w0": model.middle.inner.kernel[...], "b0": model.middle.inner.bias[...]}
    if model.blocks is not None:
        params |= {"w": model.blocks.inner.kernel[...], "b": model.blocks.inner.bias[...]}
    return plain_jax_step_fn(run, params, deep_nested_math)


def transformer_baseline(run: Run) -> Callable[[int], None]:
    spec = dict(run.model.zoo_spec[1])
    math = partial(transformer_forward, num_heads=spec["num_heads"], causal=spec["causal"])
    return plain_jax_step_fn(run, transformer_params(run.model), math)


def nnx_tutorial_step_fn(run: Run) -> Callable[[int], None]:
    """Baseline (b): the Flax tutorial loop, `nnx.jit` with `nnx.Optimizer`, one call a step."""
    model = run.model
    optimizer = nnx.Optimizer(model, run.tx, wrt=nnx.Param)
    batch, x, y, task = run.batch_size, run.data.x_train, run.data.y_train, run.data.task
    key = jax.random.key(0)

    @nnx.jit
    def step(model, optimizer, i, x, y):
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, x.shape[0])
        loss, grads = nnx.value_and_grad(lambda m: loss_and_metrics(task, m(x[idx]), y[idx])[0])(
            model
        )
        optimizer.update(model, grads)
        return loss

    def run_steps(steps: int) -> None:
        for i in range(steps):
            loss = step(model, optimizer, i, x, y)
        loss.block_until_ready()

    return run_steps


def zoo_step_fn(run: Run) -> Callable[[int], None]:
    """The zoo: the loop `train.py` runs (fused chunks, one host read per log point)."""

    state = run.state

    def run_steps(steps: int) -> None:
        nonlocal state
        start = int(state.step)
        points = list(range(start + run.log_every, start + steps + 1, run.log_every))
        chunks = run_chunks(run, state, points)
        for state, _ in chunks:  # noqa: B007  (the state after the last one is kept)
            pass

    return run_steps


# --- measurement -------------------------------------------------------------------------------


def seconds_per_step(run_steps: Callable[[int], None], steps: int, repeats: int) -> float:
    return side_by_side([run_steps], steps, repeats)[0]


def side_by_side(contenders: list[Callable[[int], None]], steps: int, repeats: int) -> list[float]:
    """Median seconds per step of each contender, timed in turn within every repeat so that a
    slow spell of a shared machine falls on all of them alike."""
    for run_steps in contenders:
        run_steps(steps)  # warm-up: compile and fill caches
    times: list[list[float]] = [[] for _ in contenders]
    for _ in range(repeats):
        for run_steps, own in zip(contenders, times, strict=True):
            start = time.perf_counter()
            run_steps(steps)
            own.append((time.perf_counter() - start) / steps)
    return [statistics.median(own) for own in times]


def speed_cases() -> list[tuple[str, int, Callable[..., Run], Callable[[Run], Callable]]]:
    """(label, steps to time, run factory taking log_every, baseline (a))."""
    cases = [
        (
            f"{name} (hidden {h}, depth {d}, batch {b})",
            steps,
            partial(deep_nested_run, h, d, b),
            deep_nested_baseline,
        )
        for (name, (h, d, b)), steps in zip(SIZES.items(), (2000, 200, 20), strict=True)
    ]
    cases += [
        (
            f"transformer (d_model {d}, 2 layers, length 12, batch 256)",
            steps,
            partial(transformer_run, d, 256),
            transformer_baseline,
        )
        for d, steps in ((64, 100), (128, 40))
    ]
    return cases


def steps_per_second(args) -> list[tuple[str, float, float, float]]:
    rows = []
    for label, steps, make_run, plain_fn in speed_cases():
        steps = max(steps // 10, 1) if args.quick else steps
        # Each contender gets a fresh run: the zoo donates its state buffers to the next step.
        # Fused chunks of LOG_EVERY, or the whole measurement when it is shorter.
        fresh = partial(make_run, log_every=min(LOG_EVERY, steps))
        zoo, plain, tutorial = side_by_side(
            [zoo_step_fn(fresh()), plain_fn(fresh()), nnx_tutorial_step_fn(fresh())],
            steps,
            args.repeats,
        )
        rows.append((label, zoo, plain, tutorial))
        print(
            f"  {label}: zoo {fmt_time(zoo)}/step, (a) {fmt_time(plain)}, (b) {fmt_time(tutorial)}",
            flush=True,
        )
    return rows


def compile_scaling(args) -> list[tuple[int, float, float]]:
    """Compile time (trace, lower and compile; median of 3, depths in turn) and step time of
    the zoo's fused step at hidden 64 by depth."""
    depths = (2, 16, 64, 256)
    compiles: dict[int, list[float]] = {depth: [] for depth in depths}
    for _ in range(3):
        for depth in depths:
            run = deep_nested_run(64, depth, 256)  # a new jitted step: nothing cached
            start = time.perf_counter()
            run.train_chunk.lower(
                run.state, run.data.x_train, run.data.y_train, length=run.log_every
            ).compile()
            compiles[depth].append(time.perf_counter() - start)
    rows = []
    for depth in depths:
        run = deep_nested_run(64, depth, 256)
        compile_s = statistics.median(compiles[depth])
        step_s = seconds_per_step(
            zoo_step_fn(run), run.log_every * (1 if args.quick else 2), args.repeats
        )
        rows.append((depth, compile_s, step_s))
        print(f"  depth {depth}: compile {compile_s:.2f} s, step {step_s * 1e3:.2f} ms", flush=True)
    return rows


def matmul_flops(n: int, repeats: int = 5) -> float:
    """FLOP/s of a plain jitted `a @ a` with `a` of shape (n, n)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def train_flops_per_step(in_features: int, hidden: int, depth: int, batch: int) -> float:
    """Matmul FLOPs of a train step: forward, plus twice that backward (input and weight grads)."""
    forward = 2 * batch * (in_features * hidden + (depth - 1) * hidden * hidden)
    return 3 * forward


def startup(repeats: int) -> tuple[float, float, float]:
    """Wall time of `train.py trainer.steps=1` with a cold and a warm compilation cache, and of
    the bare imports."""

    runs = iter(range(1_000_000))

    def wall(cmd: list[str], env: dict[str, str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [c.format(next(runs)) for c in cmd],
                check=True,
                capture_output=True,
                cwd=ROOT,
                env=env,
            )
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as tmp:
        # A new run directory each time: train.py refuses to overwrite a run's checkpoints.
        train = [sys.executable, "train.py", "trainer.steps=1", f"hydra.run.dir={tmp}/run{{}}"]
        cold = wall(train, os.environ | {"JAX_COMPILATION_CACHE_DIR": ""})
        env = os.environ | {"JAX_COMPILATION_CACHE_DIR": f"{tmp}/cache"}
        wall(train, env)  # fills the cache
        warm = wall(train, env)
    imports = wall([sys.executable, "-c", "import jax, flax.nnx, optax, hydra"], dict(os.environ))
    return warm, cold, imports


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2

    print("steps per second", flush=True)
    speed = steps_per_second(args)
    print("compile scaling", flush=True)
    scaling = compile_scaling(args)
    print("matmul peak and start-up", flush=True)
    # The large model's matmuls are (1024 x 1024) @ (1024 x 1024): the same-sized `a @ a` is the
    # practical peak for that work; a 2048 one is shown beside it for context.
    peak = matmul_flops(SIZES["large"][0])
    peak_2048 = matmul_flops(2048)
    large_step = speed[2][1]
    achieved = train_flops_per_step(4, *SIZES["large"]) / large_step
    train_s, cold_s, imports_s = startup(2 if args.quick else 3)

    lines = [
        "# Benchmark results",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"JAX backend `{jax.default_backend()}` ({jax.device_count()} device). "
        f"Versions: jax {jax.__version__}, flax {version('flax')}, optax {version('optax')}, "
        f"hydra-core {version('hydra-core')}, Python {platform.python_version()}.",
        "",
        "Medians of several repeats after a warm-up, all measured side by side in one process. "
        "Baseline (a): a hand-written `jax.jit` + optax step on plain arrays, one call a step; "
        "(b): the Flax tutorial loop, `nnx.jit` + `nnx.Optimizer`. Same math, data, initial "
        f"parameters and on-device batch sampling. The zoo fuses {LOG_EVERY} steps per dispatch "
        "(the default `trainer.log_every`). Ratios > 1 mean the zoo is faster.",
        "",
        "## Train steps",
        "",
        "| model | zoo | (a) plain jit | (b) nnx tutorial | zoo vs (a) | zoo vs (b) |",
        "|---|---|---|---|---|---|",
    ]
    for name, zoo, plain, tutorial in speed:
        lines.append(
            f"| {name} | {fmt_time(zoo)} | {fmt_time(plain)} | {fmt_time(tutorial)} | "
            f"{plain / zoo:.2f}x | {tutorial / zoo:.1f}x |"
        )
    lines += [
        "",
        "## Compile time by depth (hidden 64, batch 256, fused step)",
        "",
        "| depth | compile | vs depth 2 | step |",
        "|---|---|---|---|",
    ]
    for depth, compile_s, step_s in scaling:
        lines.append(
            f"| {depth} | {fmt_time(compile_s)} | {compile_s / scaling[0][1]:.2f}x | "
            f"{fmt_time(step_s)} |"
        )
    seed_zoo, seed_plain, seed_tut = speed[0][1:]  # the seed model's row
    lines += [
        "",
        "## Large model FLOP/s and start-up",
        "",
        f"- Large model: {achieved / 1e9:.1f} GFLOP/s in the train step (matmul FLOPs, "
        f"3x forward) vs {peak / 1e9:.1f} GFLOP/s for a plain 1024x1024 `a @ a` (the step's own "
        f"matmul size): **{achieved / peak:.0%}** of that practical peak "
        f"({achieved / peak_2048:.0%} of a 2048x2048 `a @ a`, {peak_2048 / 1e9:.1f} GFLOP/s).",
        f"- Start-up: `python train.py trainer.steps=1` {fmt_time(train_s)} with JAX's "
        f"persistent compilation cache warm (every run after the first), {fmt_time(cold_s)} "
        f'with it off, vs `python -c "import jax, flax.nnx, optax, hydra"` '
        f"{fmt_time(imports_s)}: **{train_s / imports_s:.2f}x** warm, "
        f"{cold_s / imports_s:.2f}x cold.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    targets = [
        (
            "zoo >= 1.0x (a) at every size",
            ", ".join(f"{p / z:.2f}x" for _, z, p, _ in speed),
            all(p / z >= 1.0 for _, z, p, _ in speed),
        ),
        (
            "zoo >= 2x (a) on the seed model",
            f"{seed_plain / seed_zoo:.2f}x",
            seed_plain / seed_zoo >= 2,
        ),
        (
            "zoo >= 20x (b) on the seed model",
            f"{seed_tut / seed_zoo:.1f}x",
            seed_tut / seed_zoo >= 20,
        ),
        (
            "compile at depth 256 <= 1.5x depth 2",
            f"{scaling[-1][1] / scaling[0][1]:.2f}x",
            scaling[-1][1] / scaling[0][1] <= 1.5,
        ),
        (
            "large-model FLOP/s >= 70% of matmul peak",
            f"{achieved / peak:.0%}",
            achieved / peak >= 0.7,
        ),
        (
            "start-up <= 1.5x bare imports",
            f"{train_s / imports_s:.2f}x",
            train_s / imports_s <= 1.5,
        ),
    ]
    for target, measured, ok in targets:
        lines.append(f"| {target} | {measured} | {check(ok)} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        notes = Path(args.out).with_name("NOTES.md")
        if notes.exists():
            text += "\n" + notes.read_text()
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
        update_readme(lines)


def update_readme(lines: list[str]) -> None:
    """Put the train-steps and targets tables of `lines` between README's bench markers."""
    readme = ROOT / "README.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return

    def table(title: str) -> list[str]:
        rows = lines[lines.index(title) + 2 :]
        return rows[: rows.index("")] if "" in rows else rows

    body = "\n".join([start, *table("## Train steps"), "", *table("## Targets"), end])
    head, rest = text.split(start, 1)
    readme.write_text(head + body + rest.split(end, 1)[1])
    print(f"updated the tables in {readme}")


if __name__ == "__main__":
    main()
