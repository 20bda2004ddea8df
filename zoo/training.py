"""The training loop: split the model once, then run pure jitted steps on arrays.

Steps between two log points are fused into one `lax.scan` dispatch; batches are sampled on the
device from `fold_in(data_key, step)`, so the data order depends only on the seed and the step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh
from omegaconf import DictConfig, OmegaConf

from zoo import memory, parallel
from zoo.config import MODEL_TARGET
from zoo.data import Dataset, make_dataset, model_output_width
from zoo.errors import ZooError
from zoo.registry import create_model

log = logging.getLogger(__name__)


class TrainState(NamedTuple):
    """Everything the rest of a run depends on, as arrays."""

    params: nnx.State  # nnx.Param variables
    rest: nnx.State  # every other variable (e.g. RNG counters for dropout)
    opt_state: optax.OptState
    step: jax.Array
    data_key: jax.Array


# --- building blocks ---------------------------------------------------------------------------


def model_kwargs(model_cfg: Any) -> tuple[str, dict[str, Any]]:
    """Registry name and constructor arguments from a model config (its `_target_` is ignored:
    models are only ever built through the registry)."""
    kwargs = (
        OmegaConf.to_container(model_cfg, resolve=True)
        if isinstance(model_cfg, DictConfig)
        else dict(model_cfg)
    )
    target = kwargs.pop("_target_", MODEL_TARGET)
    if target != MODEL_TARGET:
        raise ZooError(f"model._target_={target!r} is not allowed; use {MODEL_TARGET} with name")
    return kwargs.pop("name"), kwargs


def fit_to_data(kwargs: dict[str, Any], data: Dataset) -> dict[str, Any]:
    """Make the model's input and output widths follow the data, logging what changed."""
    fitted = dict(kwargs)
    inputs = data.model_inputs()
    if not inputs.keys() & fitted.keys():
        raise ZooError(
            f"the data's inputs set model keys {', '.join(inputs)}, but the model has none of "
            "them: it cannot take these inputs"
        )
    fitted |= {key: value for key, value in inputs.items() if key in fitted}
    natural = model_output_width(fitted)
    if "out_features" in fitted and (data.task == "classification" or natural != data.out_features):
        fitted["out_features"] = data.out_features
    for key in fitted:
        if fitted[key] != kwargs[key]:
            log.info("model.%s=%s follows the data (was %s)", key, fitted[key], kwargs[key])
    return fitted


def build_model(name: str, kwargs: dict[str, Any], seed: int) -> nnx.Module:
    try:
        return create_model(name, rngs=nnx.Rngs(seed), **kwargs)
    except (TypeError, ValueError) as err:
        raise ZooError(f"model {name!r}: {err}") from None


OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "adam": lambda c: optax.adam(c.lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adamw": lambda c: optax.adamw(c.lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay),
    "sgd": lambda c: optax.sgd(c.lr, momentum=c.momentum or None, nesterov=c.nesterov),
}


def make_optimizer(optim_cfg: Any) -> optax.GradientTransformation:
    if optim_cfg.name not in OPTIMIZERS:
        raise ZooError(f"optim.name={optim_cfg.name!r} is unknown; valid: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[optim_cfg.name](optim_cfg)


def loss_and_metrics(task: str, out: jax.Array, y: jax.Array) -> tuple[jax.Array, dict]:
    """Mean squared error (regression) or cross-entropy with accuracy (classification)."""
    if task == "classification":
        loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        return loss, {"accuracy": (out.argmax(-1) == y).mean()}
    return jnp.mean((out - y) ** 2), {}


# --- pure step functions -----------------------------------------------------------------------


def make_steps(
    graphdef: nnx.GraphDef,
    eval_graphdef: nnx.GraphDef,
    tx,
    task: str,
    batch_size: int,
    mesh: Mesh,
):
    """Jitted `train_chunk(state, x, y, length)` and `evaluate(params, rest, x, y)`.

    Both return arrays replicated over `mesh`; each batch is split over its `data` axis."""

    def train_step(x, y, state: TrainState, _):
        key = jax.random.fold_in(state.data_key, state.step)
        idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
        xb, yb = parallel.shard_batch((x[idx], y[idx]), mesh)

        def compute_loss(params):
            # copy: Variables of this trace, so stateful layers (dropout's RNG counters, also
            # inside nnx.scan) may update them under value_and_grad.
            model = nnx.merge(graphdef, params, state.rest, copy=True)
            loss, _ = loss_and_metrics(task, model(xb), yb)
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        (loss, rest), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, rest, opt_state, state.step + 1, state.data_key), loss

    replicated = parallel.replicated(mesh)

    @partial(jax.jit, static_argnames="length", donate_argnums=0, out_shardings=replicated)
    def train_chunk(state: TrainState, x, y, length: int):
        """`length` steps; the mean loss, the number of steps before the first non-finite loss
        (`length` if none) and whether the parameters are all finite."""
        state, losses = jax.lax.scan(partial(train_step, x, y), state, length=length)
        finite = jnp.isfinite(losses)
        finite_steps = jnp.where(finite.all(), length, jnp.argmin(finite))
        leaves = jax.tree.leaves(state.params)
        params_finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in leaves]))
        return state, losses.mean(), finite_steps, params_finite

    @partial(jax.jit, out_shardings=replicated)
    def evaluate(params, rest, x, y):
        model = nnx.merge(eval_graphdef, params, rest)
        loss, metrics = loss_and_metrics(task, model(x), y)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    return train_chunk, evaluate


def log_points(steps: int, *everies: int) -> list[int]:
    """Sorted steps where the loop stops to log, evaluate or save: multiples of each and the end."""
    points = {steps} if steps else set()
    for every in everies:
        points.update(range(every, steps + 1, every))
    return sorted(points)


def stop_if_not_finite(record: dict[str, float], first_bad_step: int, params_finite: bool) -> None:
    """Raise a ZooError naming the step where training diverged, if it did."""
    bad = [k for k, v in record.items() if not math.isfinite(v)]
    if not bad and params_finite:
        return
    what = "train_loss" if "train_loss" in bad else (bad or ["the parameters"])[0]
    step = first_bad_step if what == "train_loss" else record["step"]
    raise ZooError(
        f"{what} became non-finite at step {step}: likely causes are a learning rate too high "
        "(optim.lr) or non-finite or badly scaled data; the latest checkpoint is the last good one"
    )


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class Run:
    """A prepared run: the model split once, its jitted steps, its data and current state."""

    name: str
    kwargs: dict[str, Any]
    model: nnx.Module
    data: Dataset
    tx: optax.GradientTransformation
    state: TrainState
    train_chunk: Callable
    evaluate: Callable
    batch_size: int
    steps: int
    log_every: int
    eval_every: int


def prepare(cfg: DictConfig) -> Run:
    """Build data, model and optimizer from a validated config; split the model once.

    Joins a multi-host run first if configured; state and data are replicated over the mesh of
    `trainer.devices`."""
    trainer = cfg.trainer
    parallel.initialize_distributed(
        trainer.distributed, trainer.coordinator_address, trainer.num_processes, trainer.process_id
    )
    mesh = parallel.make_mesh(trainer.devices)
    parallel.check_batch_size(trainer.batch_size, mesh)
    log.info(parallel.describe(mesh))
    name, kwargs = model_kwargs(cfg.model)
    data = make_dataset(cfg.data, cfg.model)
    kwargs = fit_to_data(kwargs, data)
    tx = make_optimizer(cfg.optim)
    memory.check_training_fits(  # from shapes alone, before the model or its state exists
        nnx.eval_shape(lambda: build_model(name, kwargs, cfg.seed)),
        tx,
        data,
        trainer.batch_size,
        mesh.devices.flat,
        log_points=memory.log_point_count(
            trainer.steps, trainer.log_every, trainer.eval_every, trainer.ckpt_every
        ),
    )
    model = build_model(name, kwargs, cfg.seed)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    step0 = jnp.zeros((), jnp.int32)  # not weakly typed, like a restored step
    state = TrainState(params, rest, tx.init(params), step0, jax.random.key(cfg.seed))
    state = parallel.replicate(state, mesh)
    x, y, x_val, y_val = parallel.replicate(data.arrays(), mesh)
    data = replace(data, x_train=x, y_train=y, x_val=x_val, y_val=y_val)
    train_chunk, evaluate = make_steps(
        graphdef, eval_graphdef, tx, data.task, trainer.batch_size, mesh
    )
    return Run(
        name,
        kwargs,
        model,
        data,
        tx,
        state,
        train_chunk,
        evaluate,
        trainer.batch_size,
        trainer.steps,
        trainer.log_every,
        trainer.eval_every,
    )


def run_chunks(run: Run, points: list[int]) -> Iterator[dict[str, float]]:
    """Advance `run.state` to each step in `points`, one fused dispatch each; yield the record
    logged there: the mean train loss since the last point, and validation metrics when due.
    Raises ZooError, before yielding, when a loss or the parameters became non-finite."""
    x, y, x_val, y_val = run.data.arrays()
    done = int(run.state.step)
    for point in points:
        run.state, *health = run.train_chunk(run.state, x, y, length=point - done)
        train_loss, finite_steps, params_finite = jax.device_get(health)  # one host sync
        record = {"step": point, "train_loss": float(train_loss)}
        if point % run.eval_every == 0 or point == run.steps:
            metrics = run.evaluate(run.state.params, run.state.rest, x_val, y_val)
            record |= {k: float(v) for k, v in metrics.items()}
        stop_if_not_finite(record, min(done + int(finite_steps) + 1, point), bool(params_finite))
        done = point
        yield record


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Train the configured model; write metrics.jsonl, checkpoints/ and model/ into `run_dir`.

    With `trainer.resume`, continue from the latest checkpoint in `run_dir`; without it, a
    `run_dir` holding an earlier run's results is refused. Returns the last logged metrics (what
    a sweeper optimises). On SIGTERM or Ctrl-C, saves a checkpoint at the next log point and
    raises RunStopped. With several processes, all write the checkpoints together into the
    `trainer.ckpt_dir` they share; only process 0 writes the other files.
    """
    # Imported here: orbax puts a handler on the root logger at import, which would make a
    # later logging.basicConfig() in the importing program a silent no-op.
    from zoo import rundir
    from zoo.checkpoint import Checkpoints, starting_state
    from zoo.interrupts import StopRequest
    from zoo.pretrained import save_pretrained
    from zoo.reporting import Reporter
    from zoo.summary import param_table

    run_dir = Path(run_dir)
    trainer = cfg.trainer
    run = prepare(cfg)
    log.info("parameters of model %s:\n%s", run.name, param_table(run.state.params))
    log.info(
        "model %s %s: %d parameters; %d train / %d val examples (%s)",
        run.name,
        run.kwargs,
        sum(p.size for p in jax.tree.leaves(run.state.params)),
        len(run.data.x_train),
        len(run.data.x_val),
        run.data.task,
    )

    primary = jax.process_index() == 0
    if trainer.ckpt_dir is None and jax.process_count() > 1:
        raise ZooError(
            f"trainer.ckpt_dir is required with {jax.process_count()} processes: a directory "
            "they all share, for the checkpoints they write together"
        )
    ckpt_dir = Path(trainer.ckpt_dir) if trainer.ckpt_dir else run_dir / "checkpoints"
    metrics_path = run_dir / "metrics.jsonl" if primary else None
    with (
        rundir.owned(  # locked before anything is written; refused if it holds earlier results
            run_dir,
            ckpt_dir if trainer.ckpt_dir else None,
            resume=trainer.resume,
            process_index=jax.process_index(),
        ),
        StopRequest() as stop,  # before ckpts: a signal while the last save finishes is harmless
        Checkpoints(ckpt_dir, trainer.keep_checkpoints, cfg) as ckpts,
    ):
        run.state, record = starting_state(
            ckpts, run.state, resume=trainer.resume, metrics_path=metrics_path
        )
        start = int(run.state.step)
        if start > run.steps:
            raise ZooError(f"the checkpoint is at step {start}, past trainer.steps={run.steps}")
        ckpts.save(run.state)  # a fresh run's step 0: always a good checkpoint to go back to
        points = log_points(run.steps, run.log_every, run.eval_every, trainer.ckpt_every)
        reporter = Reporter(
            run_dir if primary else None,  # other processes only log
            run.steps,
            start=start,
            logger=cfg.get("logger"),
            title=f"{run.name} on {cfg.data.name}",
            bar=None if primary else False,
        )
        with open(metrics_path or os.devnull, "a") as metrics_file, reporter:
            for record in run_chunks(run, [p for p in points if p > start]):
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                reporter(record)
                step = record["step"]
                if step % trainer.ckpt_every == 0 or step == run.steps or stop.received:
                    ckpts.save(run.state)  # after its record: a resume never misses a line
                if stop.received and step < run.steps:  # on the last step: finish the run
                    raise stop.stopped(step, ckpts.directory)  # leaving `ckpts` waits for the save

        nnx.update(run.model, run.state.params, run.state.rest)
        if primary:  # still under StopRequest: a signal now lets the model be written whole
            save_pretrained(run.model, run_dir / "model")
            log.info("saved the trained model to %s", run_dir / "model")
    return record
