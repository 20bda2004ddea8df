"""`train(cfg, run_dir)`: build the run, then loop over fused dispatches between log points,
writing metrics, reports and checkpoints, and at the end the trained model.

The library knows nothing of the process it runs in: what an app does around a run (zoo-train
resumes the garbage collector after the first steps, ends the process at once on a second
Ctrl-C) comes in as `ProcessHooks`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from omegaconf import DictConfig, OmegaConf

from zoo.checkpoint.schedule import SaveSchedule
from zoo.errors import ZooError
from zoo.files import write_atomically
from zoo.training.build import build_run
from zoo.training.init_from import INIT_REPORT
from zoo.training.loop import evaluates_at, log_points, logged_metrics, run_chunks
from zoo.training.monitor import Monitor
from zoo.training.profiling import ChunkProfile, log_compiled_memory
from zoo.training.state import Run, TrainState, weights

log = logging.getLogger(__name__)
RUN_CONFIG = "config.yaml"  # the run's resolved config, written by the zoo into its directory
TOKENIZER = "tokenizer.json"  # a text run's tokenizer, which zoo-generate reads
SHARDING = "sharding.json"  # each parameter's sharding spec on this run's mesh


@dataclass(frozen=True)
class ProcessHooks:
    """What an app adds around a run in its process; the library's own defaults do nothing.

    `after_chunk` is called after every fused dispatch's record (zoo-train resumes the garbage
    collector it paused for start-up); `second_interrupt` is called on a second Ctrl-C (zoo-train
    ends the process at once; without it a second Ctrl-C raises KeyboardInterrupt)."""

    after_chunk: Callable[[], None] = lambda: None
    second_interrupt: Callable[[], None] | None = None


def train(
    cfg: DictConfig, run_dir: str | os.PathLike, hooks: ProcessHooks | None = None
) -> dict[str, float]:
    """Train the configured model; write config.yaml, metrics.jsonl, checkpoints/, best/ and
    model/ into `run_dir`. Returns the last logged metrics and `optimized_metric`, the best value
    of `trainer.monitor`. With `trainer.patience`, stops early once it stops improving.

    The run locks `run_dir` before writing anything. With `trainer.resume`, it continues from the
    latest checkpoint; without it, a `run_dir` holding an earlier run's results is refused. On
    SIGTERM or Ctrl-C, it saves a checkpoint at the next log point and raises RunStopped; other
    checkpoints follow zoo.checkpoint.schedule (steps and wall time). With several processes, all
    write the checkpoints together into the `trainer.ckpt_dir` they share; only process 0 writes
    the rest.
    `hooks`: what the app adds in its process (see ProcessHooks).
    """
    # Imported here: orbax puts a handler on the root logger at import, which would make a
    # later logging.basicConfig() in the importing program a silent no-op.
    from zoo.checkpoint.manager import Checkpoints, NoCheckpoints
    from zoo.reporting.reporter import Reporter
    from zoo.training import run_dir as run_dirs
    from zoo.training.interrupts import StopRequest

    run_dir, trainer, hooks = Path(run_dir), cfg.trainer, hooks or ProcessHooks()
    if cfg.get("logger"):  # a logger that cannot write is refused before anything is written
        from zoo.reporting.logger_checks import check_loggers

        check_loggers(cfg, run_dir)
    run = build_run(cfg)
    monitor = Monitor.from_config(trainer)  # best/ and early stopping
    monitor.check_logged(logged_metrics(run))
    log_model(run)
    primary = jax.process_index() == 0
    ckpt_dir = checkpoint_dir(cfg, run_dir)
    metrics_path = run_dir / "metrics.jsonl" if primary else None
    with (
        run_dirs.owned(  # locked before anything is written; refused if it holds earlier results
            run_dir,
            ckpt_dir if trainer.checkpoints else None,  # whichever setting chose it
            resume=trainer.resume,
            process_index=jax.process_index(),
        ),
        # before ckpts: a signal while the last save finishes is harmless
        StopRequest(hooks.second_interrupt) as stop,
        Checkpoints(ckpt_dir, trainer.keep_checkpoints, cfg)
        if trainer.checkpoints
        else NoCheckpoints(ckpt_dir) as ckpts,
    ):
        if primary:  # what a killed write of best/, model/ or a run file left: ours now
            run_dirs.remove_leftovers(run_dir)
        state, record = starting_point(run, cfg, run_dir, ckpts, monitor, metrics_path)
        start = int(state.step)
        saves = SaveSchedule.from_settings(trainer.ckpt_every, trainer.ckpt_every_seconds)
        points = log_points(run.steps, run.log_every, run.eval_every, saves.every_steps)
        if monitor.exhausted:  # the run stopped early before: nothing left to train
            log.info(monitor.stop_message(start))
            points = []
        reporter = Reporter(
            run_dir if primary else None,  # other processes only log
            run.steps,
            start=start,
            config=cfg,
            title=f"{run.name} on {cfg.data.name}",
            bar=None if primary else False,
        )
        profile = ChunkProfile(run_dir / "profile", trainer.profile_chunks if primary else 0)
        with open(metrics_path or os.devnull, "a") as metrics_file, reporter, profile:
            ahead = [p for p in points if p > start]
            if trainer.profile_chunks and ahead:  # debug=profile: what the step program needs
                data = run.data
                log_compiled_memory(
                    run.train_chunk, state, data.x_train, data.y_train, ahead[0] - start
                )
            chunks = run_chunks(run, state, [p for p in points if p > start])
            for state, record in chunks:  # noqa: B007  (the state after the last one is kept)
                hooks.after_chunk()
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                reporter(record)
                profile.chunk_done()
                step = record["step"]
                if monitor.update(record, evaluates_at(run, step)):  # before the checkpoint
                    save_model(run, state, run_dir / "best", primary)
                early = monitor.exhausted and step < run.steps
                if saves.due(step, forced=step == run.steps or bool(stop.received) or early):
                    # after its record: a resume never misses a line
                    ckpts.save(state, monitor=monitor.state())
                if early:
                    log.info(monitor.stop_message(step))
                    break
                if stop.received and step < run.steps:  # on the last step: finish the run
                    raise stop.stopped(step, ckpts.directory)  # leaving `ckpts` waits for the save
            # Still under StopRequest (a signal now lets the model be written whole) and inside
            # the reporter's block (its loggers keep the model as an artifact).
            save_final(run, state, run_dir, monitor, primary)
    return record | {"optimized_metric": monitor.optimized_metric}


def starting_point(
    run: Run, cfg: DictConfig, run_dir: Path, ckpts: Any, monitor: Monitor, metrics_path: Any
) -> tuple[TrainState, dict[str, float]]:
    """The state the loop starts from and the last record before it: a resumed run's latest
    checkpoint (and its monitor), else step 0, with the run's config and init report written and,
    for weights from init.from, the start kept as a checkpoint."""
    from zoo.checkpoint.resume import starting_state

    primary = metrics_path is not None
    if primary:
        write_atomically(run_dir / RUN_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
        if (tokenizer := getattr(run.data.stream, "tokenizer", None)) is not None:
            write_atomically(run_dir / TOKENIZER, tokenizer.to_json())  # text in, text out
        if run.placement is not None:  # each parameter's shape, spec and the rule that gave it
            layout = json.dumps(run.placement.as_json(), indent=1)
            write_atomically(run_dir / SHARDING, layout + "\n")
    state, record = starting_state(ckpts, run.state, cfg.trainer.resume, metrics_path)
    start = int(state.step)
    if start > run.steps:
        raise ZooError(f"the checkpoint is at step {start}, past trainer.steps={run.steps}")
    if ckpts.restored_meta is not None:
        monitor.restore(ckpts.restored_meta.get("monitor"))
    if start == 0 and run.init_report is not None:  # a fresh run: init.from excludes resume
        if primary:
            run.init_report.save(run_dir / INIT_REPORT)
        ckpts.save(state, monitor=monitor.state())  # weights from elsewhere: keep the start
    return state, record


def save_final(
    run: Run, state: TrainState, run_dir: Path, monitor: Monitor, primary: bool = True
) -> None:
    """The trained model in `model/`, and where the best one is (written by process 0; every
    process calls this, see save_model)."""
    save_model(run, state, run_dir / "model", primary)
    if not primary:
        return
    log.info("saved the trained model to %s", run_dir / "model")
    if monitor.best is not None:
        log.info(
            "best %s=%.6g at step %d: its weights are in %s",
            monitor.metric,
            monitor.best,
            monitor.best_step,
            run_dir / "best",
        )


def save_model(run: Run, state: TrainState, directory: Path, primary: bool = True) -> None:
    """The weights a run validates (the moving average, with trainer.ema) as a pretrained model,
    written by the `primary` process. With several processes every process calls this: weights
    sharded over them are gathered first (a collective), whole on each."""
    from zoo.weights.pretrained import save_pretrained

    params, rest = whole_on_each_process((weights(state), state.rest))
    if primary:
        nnx.update(run.model, params, rest)
        save_pretrained(run.model, directory)


def whole_on_each_process(tree: Any) -> Any:
    """`tree` unchanged when this process can read every array of it (one process, or arrays
    replicated); else every array gathered whole onto each process's devices (all processes
    must call this together), as this process's own copy."""
    leaves = jax.tree.leaves(tree)
    if all(a.is_fully_addressable or a.sharding.is_fully_replicated for a in leaves):
        return tree
    mesh = next(a.sharding.mesh for a in leaves if not a.sharding.is_fully_replicated)
    gathered = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, PartitionSpec()))(tree)
    return jax.tree.map(lambda a: a.addressable_data(0), gathered)


def log_model(run: Run) -> None:
    """The parameter table and a one-line summary of the model and data."""
    from zoo.reporting.summary import param_table

    log.info("parameters of model %s:\n%s", run.name, param_table(run.state.params))
    log.info(
        "model %s %s: %d parameters; %d train / %d val examples (%s)",
        run.name,
        run.kwargs,
        sum(p.size for p in jax.tree.leaves(run.state.params)),
        run.data.n_train,
        len(run.data.x_val),
        run.data.task,
    )


def checkpoint_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """`trainer.ckpt_dir`, by default `<run dir>/checkpoints`; several processes must share one."""
    if cfg.trainer.ckpt_dir is None and jax.process_count() > 1:
        raise ZooError(
            f"trainer.ckpt_dir is required with {jax.process_count()} processes: a directory "
            "they all share, for the checkpoints they write together"
        )
    return Path(cfg.trainer.ckpt_dir) if cfg.trainer.ckpt_dir else run_dir / "checkpoints"
