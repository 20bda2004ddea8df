"""`make bench`: the zoo's training loop beside hand-written JAX and the Flax tutorial loop, in
float32 and bfloat16, and what a run costs around its loop (checkpoints, start-up).

Every comparison runs in this one process, side by side, on the same data, the same initial
parameters and the same on-device batch sampling; each figure is the median of several repeats
after a warm-up. On the CPU it writes benchmarks/RESULTS.md and README's tables; on a GPU it
writes its own section of RESULTS.md (between the gpu markers), naming the card, with larger
models and their FLOP/s as a fraction of the card's peak.

    python benchmarks/bench.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from transformer_baseline import forward as transformer_forward
from transformer_baseline import transformer_params

from zoo.training.build import build_run
from zoo.training.loop import run_chunks
from zoo.training.state import Run
from zoo.training.steps import loss_and_metrics

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # name: (hidden, depth, batch)
    "seed": (8, 1, 256),
    "mid": (256, 4, 512),
    "large": (1024, 8, 1024),
}
GPU_SIZES = {"xl": (8192, 8, 8192)}  # on a GPU only: big enough to keep it busy
LOG_EVERY = 100  # steps fused into one dispatch, as in the default config
DTYPES = ("float32", "bfloat16")
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, by device kind.
BF16_PEAK = {"H100 80GB HBM3": 989.4e12, "H100 SXM": 989.4e12, "H200": 989.4e12}
GPU_START, GPU_END = "<!-- gpu:start -->", "<!-- gpu:end -->"


def zoo_run(*overrides: str) -> Run:
    """The zoo's own prepared run for the train config with these overrides."""
    from hydra import compose, initialize_config_dir

    from zoo.config.store import register_configs

    register_configs()
    # No evaluation inside the timed window: the baselines do not evaluate either.
    timing = ["trainer.steps=1000000000", "trainer.eval_every=1000000000"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*timing, *overrides])
    return build_run(cfg)


def deep_nested_run(
    hidden: int, depth: int, batch: int, log_every: int = LOG_EVERY, dtype: str = "float32"
) -> Run:
    return zoo_run(
        f"model.hidden={hidden}",
        f"model.depth={depth}",
        f"model.dtype={dtype}",
        f"trainer.batch_size={batch}",
        f"trainer.log_every={log_every}",
    )


def transformer_run(
    d_model: int,
    batch: int,
    log_every: int = LOG_EVERY,
    dtype: str = "float32",
    layers: int = 2,
    length: int = 12,
) -> Run:
    return zoo_run(
        "model=transformer",
        "data=sequence",
        f"data.length={length}",
        f"model.d_model={d_model}",
        f"model.num_heads={max(4, d_model // 64)}",
        f"model.num_layers={layers}",
        f"model.dtype={dtype}",
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


def in_dtype(forward: Callable, dtype: str) -> Callable:
    """`forward` computing in `dtype`: float32 parameters and float inputs cast on the way in,
    as the zoo's layers do (the loss casts the output back to float32)."""
    if dtype == "float32":
        return forward

    def cast(a: jax.Array) -> jax.Array:
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return lambda params, x: forward(jax.tree.map(cast, params), cast(x))


def model_dtype(run: Run) -> str:
    return dict(run.model.zoo_spec[1]).get("dtype", "float32")


def plain_jax_step_fn(run: Run, params: dict, forward: Callable) -> Callable[[int], None]:
    """Baseline (a): one `jax.jit` + optax step per Python call, on a plain parameter dict and a
    hand-written `forward(params, x)`, in the run's model dtype."""
    forward = in_dtype(forward, model_dtype(run))
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


@dataclass(frozen=True)
class Case:
    """A model to time: its label, steps per timing, run factory (taking log_every and dtype),
    baseline (a), and its matmul FLOPs per train step."""

    label: str
    steps: int
    make_run: Callable[..., Run]
    plain_fn: Callable[[Run], Callable]
    flops: float


def speed_cases(gpu: bool) -> list[Case]:
    """The CPU sizes everywhere; on a GPU also models big enough to keep it busy."""
    timed = {"seed": 2000, "mid": 200, "large": 20}  # steps: about a second each on the CPU
    if gpu:
        timed = {"seed": 2000, "mid": 200, "large": 200, "xl": 20}
    sizes = [(item, timed[item[0]]) for item in (SIZES | (GPU_SIZES if gpu else {})).items()]
    cases = [
        Case(
            f"{name} (hidden {h}, depth {d}, batch {b})",
            steps,
            partial(deep_nested_run, h, d, b),
            deep_nested_baseline,
            train_flops_per_step(4, h, d, b),
        )
        for (name, (h, d, b)), steps in sizes
    ]
    transformers = [(64, 2, 12, 256, 100), (128, 2, 12, 256, 40)]
    if gpu:
        transformers = [(64, 2, 12, 256, 100), (128, 2, 12, 256, 100), (1024, 8, 256, 128, 10)]
    cases += [
        Case(
            f"transformer (d_model {d}, {n} layers, length {length}, batch {b})",
            steps,
            partial(transformer_run, d, b, layers=n, length=length),
            transformer_baseline,
            transformer_flops_per_step(d, n, length, b, vocab=16),
        )
        for d, n, length, b, steps in transformers
    ]
    return cases


def steps_per_second(args, gpu: bool) -> list[tuple[str, str, float, float, float, float]]:
    """(label, dtype, zoo, (a), (b) seconds per step, matmul FLOPs per step) per case and dtype."""
    rows = []
    for case in speed_cases(gpu):
        if args.cases not in case.label:
            continue
        for dtype in DTYPES:
            steps = max(case.steps // 10, 1) if args.quick else case.steps
            # Each contender gets a fresh run: the zoo donates its state buffers to the next
            # step. Fused chunks of LOG_EVERY, or the whole measurement when it is shorter.
            fresh = partial(case.make_run, log_every=min(LOG_EVERY, steps), dtype=dtype)
            zoo, plain, tutorial = side_by_side(
                [zoo_step_fn(fresh()), case.plain_fn(fresh()), nnx_tutorial_step_fn(fresh())],
                steps,
                args.repeats,
            )
            rows.append((case.label, dtype, zoo, plain, tutorial, case.flops))
            if not gpu and case.label.startswith("large") and dtype == "float32":
                # the practical peak for the large model's matmuls, measured in the same minute
                # (a busy spell of the shared machine then falls on both)
                args.peaks = {"1024": matmul_flops(1024), "2048": matmul_flops(2048)}
            print(
                f"  {case.label} {dtype}: zoo {fmt_time(zoo)}/step, (a) {fmt_time(plain)}, "
                f"(b) {fmt_time(tutorial)}",
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


def matmul_flops(n: int, repeats: int = 5, dtype: str = "float32") -> float:
    """FLOP/s of a plain jitted `a @ a` with `a` of shape (n, n)."""
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(dtype)
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


def transformer_flops_per_step(d: int, layers: int, length: int, batch: int, vocab: int) -> float:
    """Matmul FLOPs of a Transformer train step (3x forward): per token and layer the four
    projections (4 d^2) and the feed-forward (2 * 4 d^2), the attention scores and mixing
    (2 * length * d), then the head (d * vocab); 2 FLOPs per multiply-add."""
    per_token = layers * (12 * d * d + 2 * length * d) + d * vocab
    return 3 * 2 * per_token * length * batch


def checkpoint_overhead(repeats: int, steps: int = 20_000) -> dict[str, float]:
    """Seconds of the default config's `steps`-step run (zoo.training.run.train, in this process):
    with the default checkpoint schedule, with checkpoints only at the end (checkpointing off
    but for the final save every run makes), and saving at every multiple of ckpt_every (500)
    as before ckpt_every_seconds. Interleaved, median of `repeats` after a warm-up each."""
    from hydra import compose, initialize_config_dir

    from zoo.config.store import register_configs
    from zoo.training.run import train

    register_configs()
    variants = {
        "default": [],
        "off": ["trainer.ckpt_every=1000000000"],
        "every 500": ["trainer.ckpt_every_seconds=0"],
    }
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfgs = {
            name: compose(config_name="train", overrides=[f"trainer.steps={steps}", *extra])
            for name, extra in variants.items()
        }
    times: dict[str, list[float]] = {name: [] for name in cfgs}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            for name, cfg in cfgs.items():
                start = time.perf_counter()
                train(cfg, Path(tmp) / f"{name}-{i}")
                if i:  # the first is the warm-up (compiling)
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def startup(repeats: int) -> dict[str, float]:
    """Median wall times of `train.py trainer.steps=1` with a warm compilation cache (`train`)
    and with none (`cold`), of benchmarks/minimal_app.py (`minimal`: Hydra and one jitted step,
    none of the zoo, warm cache; `minimal+ckpt`: and an orbax checkpoint) and of the bare imports
    (`imports`). The warm runs, the minimal
    app and the imports are timed in turn within each repeat, so a slow spell of the shared
    machine falls on all of them alike."""

    runs = iter(range(1_000_000))
    times: dict[str, list[float]] = {
        "train": [],
        "cold": [],
        "minimal": [],
        "minimal+ckpt": [],
        "imports": [],
    }

    def wall(name: str, cmd: list[str], env: dict[str, str]) -> None:
        start = time.perf_counter()
        subprocess.run(
            [c.format(next(runs)) for c in cmd],
            check=True,
            capture_output=True,
            cwd=ROOT,
            env=env,
        )
        times[name].append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        # A new run directory each time: train.py refuses to overwrite a run's checkpoints.
        train = [sys.executable, "train.py", "trainer.steps=1", f"hydra.run.dir={tmp}/run{{}}"]
        minimal = [sys.executable, "benchmarks/minimal_app.py", f"hydra.run.dir={tmp}/min{{}}"]
        imports = [sys.executable, "-c", "import jax, flax.nnx, optax, hydra"]
        for _ in range(repeats):
            wall("cold", train, os.environ | {"JAX_COMPILATION_CACHE_DIR": ""})
        env = os.environ | {
            "JAX_COMPILATION_CACHE_DIR": f"{tmp}/cache",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # as zoo-train sets it
        }
        warm = {"train": train, "minimal": minimal, "minimal+ckpt": [*minimal, "+checkpoint=true"]}
        for name, cmd in warm.items():  # fill the cache
            wall(name, cmd, env)
            times[name].clear()
        for _ in range(repeats):
            for name, cmd in warm.items():
                wall(name, cmd, env)
            wall("imports", imports, dict(os.environ))
    return {name: statistics.median(t) for name, t in times.items()}


def sharding_memory() -> list[dict]:
    """benchmarks/sharding_memory.py in a subprocess (8 simulated devices): per preset and remat
    policy, the parameter and optimizer bytes per device and the compiled step's peak."""
    result = subprocess.run(
        [sys.executable, "benchmarks/sharding_memory.py", str(ROOT / "configs")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(result.stdout.splitlines()[-1])


def sharding_table(rows: list[dict]) -> list[str]:
    from zoo.memory import human

    lines = [
        "## Sharding on 8 simulated CPU devices (transformer, width 128, 4 layers, batch 64)",
        "",
        "Parameters + optimizer state per device, and the compiled program's peak per device "
        "(arguments + outputs - donated + temporaries) for 10 fused steps.",
        "",
        "| parallel | remat | state per device | compiled peak |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['remat']} | {human(row['per_device'])} | "
            f"{human(row['peak'])} |"
        )
    return [*lines, ""]


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
    parser.add_argument("--raw", help="also write the measurements to this JSON file")
    parser.add_argument("--cases", default="", help="time only the models whose name has this")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    gpu = jax.default_backend() == "gpu"

    raw: dict = {}

    def measured(name: str, value: object) -> object:
        """Keep each section's figures as soon as they are measured (--raw)."""
        raw[name] = value
        if args.raw:
            Path(args.raw).write_text(json.dumps(raw, indent=1))
        return value

    info = measured("machine", machine())
    print("steps per second", flush=True)
    speed = measured("speed", steps_per_second(args, gpu))
    print("compile scaling", flush=True)
    scaling = measured("scaling", compile_scaling(args))
    print("checkpoint overhead", flush=True)
    ckpt = measured("ckpt", checkpoint_overhead(*((1, 2000) if args.quick else (3, 20_000))))
    print(", ".join(f"{k} {v:.2f} s" for k, v in ckpt.items()), flush=True)
    print("start-up", flush=True)
    start = startup(3 if args.quick else 7)
    composed = composition(3 if args.quick else 7)
    start = measured("start", start | {f"compose {k}": v for k, v in composed.items()})
    print("matmul peak", flush=True)
    # CPU: the large model's matmuls are (1024 x 1024) @ (1024 x 1024), so the same-sized `a @ a`
    # is the practical peak for that work, a 2048 one beside it for context (measured beside the
    # large model's steps); GPU: a big bf16 one.
    sizes = {"bf16 8192": (8192, "bfloat16")} if gpu else {"1024": (1024,), "2048": (2048,)}
    peaks = getattr(args, "peaks", None) or {
        name: matmul_flops(n, 5, *dtype) for name, (n, *dtype) in sizes.items()
    }
    peaks = measured("peaks", peaks)
    report = gpu_report if gpu else cpu_report
    lines = report(info, speed, scaling, ckpt, start, peaks)  # type: ignore[arg-type]
    if not gpu:  # simulated CPU devices: a CPU's section
        print("sharding memory", flush=True)
        lines += sharding_table(measured("sharding", sharding_memory()))
    text = "\n".join(lines)
    print(text)
    if args.quick:
        return
    write_results(Path(args.out), text, gpu)
    if not gpu:
        update_readme(lines)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "backend": jax.default_backend(),
        "devices": str(jax.device_count()),
        "device_kind": jax.devices()[0].device_kind,
        "versions": f"jax {jax.__version__}, flax {version('flax')}, optax {version('optax')}, "
        f"hydra-core {version('hydra-core')}, Python {platform.python_version()}",
    }


def header(info: dict[str, str]) -> str:
    return (
        f"Machine: {info['cpu']}, JAX backend `{info['backend']}` ({info['devices']} device: "
        f"{info['device_kind']}). Versions: {info['versions']}."
    )


def speed_table(speed: list, peak: float | None = None) -> list[str]:
    """The train-steps table; with `peak`, the zoo's matmul FLOP/s and their share of it."""
    head = "| model | dtype | zoo | (a) plain jit | (b) nnx tutorial | zoo vs (a) | zoo vs (b) |"
    rule = "|---|---|---|---|---|---|---|"
    if peak:
        head, rule = head + " zoo TFLOP/s | of peak |", rule + "---|---|"
    rows = [head, rule]
    for name, dtype, zoo, plain, tutorial, flops in speed:
        row = (
            f"| {name} | {dtype} | {fmt_time(zoo)} | {fmt_time(plain)} | {fmt_time(tutorial)} | "
            f"{plain / zoo:.2f}x | {tutorial / zoo:.1f}x |"
        )
        if peak:
            row += f" {flops / zoo / 1e12:.1f} | {flops / zoo / peak:.1%} |"
        rows.append(row)
    return rows


def scaling_table(scaling: list) -> list[str]:
    rows = ["| depth | compile | vs depth 2 | step |", "|---|---|---|---|"]
    for depth, compile_s, step_s in scaling:
        rows.append(
            f"| {depth} | {fmt_time(compile_s)} | {compile_s / scaling[0][1]:.2f}x | "
            f"{fmt_time(step_s)} |"
        )
    return rows


def composition(repeats: int, rounds: int = 20) -> dict[str, float]:
    """Median CPU seconds of one in-process composition of `train` (as a sweep under the basic
    launcher, `zoo.compose` or the tests make them: the same config-group choices, another value
    each time), by Hydra alone (`hydra`) and inside the zoo's `light_composition()` (`zoo`: the
    ConfigStore shared, each file parsed once, the defaults list and merged config kept), in
    turn within each repeat."""
    from hydra import compose, initialize_config_dir

    from zoo.app.compose_once import light_composition

    times: dict[str, list[float]] = {"hydra": [], "zoo": []}
    scopes = {"hydra": contextlib.nullcontext, "zoo": light_composition}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for _ in range(repeats):
            for name, scope in scopes.items():
                with scope():
                    compose("train", ["model=mlp"])  # what is kept or parsed once, made
                    start = time.process_time()
                    for i in range(rounds):
                        compose("train", ["model=mlp", f"optim.lr={0.001 * (i + 1)}"])
                    times[name].append((time.process_time() - start) / rounds)
    return {name: statistics.median(t) for name, t in times.items()}


def around_the_loop(ckpt: dict[str, float], start: dict[str, float]) -> list[str]:
    train_s, cold_s, imports_s, minimal_s, ckpt_s = (
        start[k] for k in ("train", "cold", "imports", "minimal", "minimal+ckpt")
    )
    return [
        f"- Checkpoints: the default config's 20,000-step run (`train.py trainer.steps=20000`, "
        f"in-process) takes {fmt_time(ckpt['default'])} with the default schedule "
        f"(`trainer.ckpt_every=500`, `trainer.ckpt_every_seconds=300`) against "
        f"{fmt_time(ckpt['off'])} with checkpointing off but for the final save "
        f"(`trainer.ckpt_every=1000000000`): **{ckpt['default'] / ckpt['off']:.2f}x**. Saving at "
        f"every multiple of 500 (`trainer.ckpt_every_seconds=0`, the schedule before) takes "
        f"{fmt_time(ckpt['every 500'])}, {ckpt['every 500'] / ckpt['off']:.2f}x.",
        f"- Start-up: `python train.py trainer.steps=1` {fmt_time(train_s)} with JAX's "
        f"persistent compilation cache warm (every run after the first), {fmt_time(cold_s)} "
        f'with it off, vs `python -c "import jax, flax.nnx, optax, hydra"` '
        f"{fmt_time(imports_s)}: **{train_s / imports_s:.2f}x** warm, "
        f"{cold_s / imports_s:.2f}x cold. The least a Hydra app training an NNX model pays "
        f"(benchmarks/minimal_app.py: an empty config, one jitted Adam step of the seed's "
        f"model, no data, validation or report, warm cache) is {fmt_time(minimal_s)}, "
        f"**{minimal_s / imports_s:.2f}x**, and {fmt_time(ckpt_s)}, "
        f"**{ckpt_s / imports_s:.2f}x**, when it also saves one orbax checkpoint as every run "
        f"does; the zoo's run is {train_s / ckpt_s:.2f}x the latter.",
        f"- Composition in a process (a sweep under the basic launcher, `zoo.compose`, the "
        f"tests): composing `train` again with the same config groups and another value takes "
        f"{fmt_time(start['compose zoo'])} of CPU in the zoo's apps against "
        f"{fmt_time(start['compose hydra'])} by Hydra alone: "
        f"**{start['compose hydra'] / start['compose zoo']:.1f}x** less "
        f"(zoo/app/composition_memo.py).",
    ]


def cpu_report(
    info: dict, speed: list, scaling: list, ckpt: dict, start: dict, peaks: dict
) -> list[str]:
    peak, peak_2048 = peaks["1024"], peaks["2048"]
    f32 = [row for row in speed if row[1] == "float32"]
    large = next(row for row in f32 if row[0].startswith("large"))
    large_bf16 = next(r for r in speed if r[0] == large[0] and r[1] == "bfloat16")
    achieved = large[5] / large[2]
    seed_zoo, seed_plain, seed_tut = f32[0][2:5]  # the seed model's row
    train_s, imports_s = start["train"], start["imports"]
    overhead = ckpt["default"] / ckpt["off"]
    lines = [
        "# Benchmark results",
        "",
        header(info),
        "",
        "Medians of several repeats after a warm-up, all measured side by side in one process. "
        "Baseline (a): a hand-written `jax.jit` + optax step on plain arrays, one call a step; "
        "(b): the Flax tutorial loop, `nnx.jit` + `nnx.Optimizer`. Same math, data, initial "
        f"parameters and on-device batch sampling. The zoo fuses {LOG_EVERY} steps per dispatch "
        "(the default `trainer.log_every`). Ratios > 1 mean the zoo is faster. bfloat16 rows: "
        "`model.dtype=bfloat16` (float32 parameters, bfloat16 compute) for the zoo and (b); (a) "
        "casts its float32 parameters and inputs to bfloat16 the same way.",
        "",
        "## Train steps",
        "",
        *speed_table(speed),
        "",
        "## Compile time by depth (hidden 64, batch 256, fused step)",
        "",
        *scaling_table(scaling),
        "",
        "## Large model FLOP/s, checkpoints and start-up",
        "",
        f"- Large model: {achieved / 1e9:.1f} GFLOP/s in the train step (matmul FLOPs, "
        f"3x forward) vs {peak / 1e9:.1f} GFLOP/s for a plain 1024x1024 `a @ a` (the step's own "
        f"matmul size): **{achieved / peak:.0%}** of that practical peak "
        f"({achieved / peak_2048:.0%} of a 2048x2048 `a @ a`, {peak_2048 / 1e9:.1f} GFLOP/s). "
        f"In bfloat16: {large_bf16[5] / large_bf16[2] / 1e9:.1f} GFLOP/s (this CPU has no "
        "faster bfloat16 matmul: bfloat16 is a correctness matter here).",
        *around_the_loop(ckpt, start),
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    targets = [
        (
            "zoo >= 1.0x (a) at every size (float32)",
            ", ".join(f"{r[3] / r[2]:.2f}x" for r in f32),
            all(r[3] / r[2] >= 1.0 for r in f32),
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
        ("20,000 default steps <= 1.15x checkpointing off", f"{overhead:.2f}x", overhead <= 1.15),
        (
            "start-up <= 1.5x bare imports",
            f"{train_s / imports_s:.2f}x",
            train_s / imports_s <= 1.5,
        ),
    ]
    for target, measured, ok in targets:
        lines.append(f"| {target} | {measured} | {check(ok)} |")
    lines.append("")
    return lines


def gpu_report(
    info: dict, speed: list, scaling: list, ckpt: dict, start: dict, peaks: dict
) -> list[str]:
    kind = info["device_kind"]
    spec = next((peak for name, peak in BF16_PEAK.items() if name in kind), None)
    measured = peaks["bf16 8192"]
    peak = spec or measured
    peak_words = (
        f"the {kind}'s dense bfloat16 peak from NVIDIA's data sheet, {spec / 1e12:.0f} TFLOP/s"
        if spec
        else f"a plain 8192x8192 bfloat16 `a @ a` on it, {measured / 1e12:.0f} TFLOP/s"
    )
    bf16 = [r for r in speed if r[1] == "bfloat16"]
    biggest_transformer = max(
        (r for r in bf16 if r[0].startswith("transformer")), key=lambda r: r[5]
    )
    bf16 = [r for r in bf16 if r[0].startswith(("large", "xl"))] + [biggest_transformer]
    return [
        GPU_START,
        f"## GPU: {kind}",
        "",
        header(info),
        "",
        "As on the CPU (same baselines and loop), with the CPU's sizes and larger ones. The "
        f"FLOP/s columns count matmul FLOPs (3x forward) against {peak_words}; a plain 8192x8192 "
        f"bfloat16 `a @ a` reaches {measured / 1e12:.0f} TFLOP/s "
        f"({measured / peak:.0%} of it).",
        "",
        *speed_table(speed, peak),
        "",
        "bfloat16 FLOP/s as a fraction of that peak: "
        + "; ".join(f"{r[0]}: **{r[5] / r[2] / peak:.0%}**" for r in bf16)
        + ".",
        "",
        "Compile time by depth (hidden 64, batch 256, fused step):",
        "",
        *scaling_table(scaling),
        "",
        *around_the_loop(ckpt, start),
        GPU_END,
    ]


def write_results(path: Path, text: str, gpu: bool) -> None:
    """RESULTS.md: the CPU's tables and NOTES.md, then the GPU's section; each run replaces its
    own part and keeps the other."""
    old = path.read_text() if path.exists() else ""
    gpu_part = (
        old[old.index(GPU_START) : old.index(GPU_END) + len(GPU_END)] if GPU_END in old else ""
    )
    cpu_part = old.split(GPU_START)[0].rstrip("\n") + "\n" if old else ""
    if gpu:
        gpu_part = text
    else:
        notes = path.with_name("NOTES.md")
        cpu_part = text + ("\n" + notes.read_text() if notes.exists() else "")
    path.write_text(cpu_part + ("\n" + gpu_part + "\n" if gpu_part else ""))
    print(f"wrote {path}")


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
