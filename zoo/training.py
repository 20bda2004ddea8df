"""`train(cfg, run_dir)`: build the run, then loop over fused dispatches between log points,
writing metrics, reports and checkpoints, and at the end the trained model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jax
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from zoo import startup
from zoo.build import Run, build_run
from zoo.errors import ZooError
from zoo.files import write_atomically
from zoo.loop import log_points, run_chunks
from zoo.savepoints import SaveSchedule, StopSignals

log = logging.getLogger(__name__)
RUN_CONFIG = "config.yaml"  # the run's resolved config, written by the zoo into its directory


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, float]:
    """Train the configured model; write config.yaml, metrics.jsonl, checkpoints/ and model/
    into `run_dir`. Returns the last logged metrics.

    With `trainer.resume`, continue from the latest checkpoint. Checkpoints follow
    zoo.savepoints; on SIGTERM or Ctrl-C, save one at the next log point and raise RunStopped.
    With several processes, all write the checkpoints together into the `trainer.ckpt_dir` they
    share; only process 0 writes the other files.
    """
    # Imported here: orbax puts a handler on the root logger at import, which would make a
    # later logging.basicConfig() in the importing program a silent no-op.
    from zoo.checkpoint import Checkpoints, starting_state
    from zoo.pretrained import save_pretrained
    from zoo.reporting import Reporter

    run_dir, trainer = Path(run_dir), cfg.trainer
    run = build_run(cfg)
    log_model(run)
    primary = jax.process_index() == 0
    ckpt_dir = checkpoint_dir(cfg, run_dir)
    metrics_path = run_dir / "metrics.jsonl" if primary else None
    if primary:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / RUN_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    with (
        StopSignals() as stop,  # outermost: a signal while the last save finishes is harmless
        Checkpoints(ckpt_dir, trainer.keep_checkpoints, cfg) as ckpts,
    ):
        state, record = starting_state(ckpts, run.state, trainer.resume, metrics_path)
        start = int(state.step)
        if start > run.steps:
            raise ZooError(f"the checkpoint is at step {start}, past trainer.steps={run.steps}")
        saves = SaveSchedule(trainer.ckpt_every, trainer.ckpt_every_seconds)
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
            chunks = run_chunks(run, state, [p for p in points if p > start])
            for state, record in chunks:  # noqa: B007  (the state after the last one is kept)
                startup.resume_gc()  # start-up is over (zoo.startup)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                reporter(record)
                step = record["step"]
                if saves.due(step, forced=step == run.steps or stop.received is not None):
                    ckpts.save(state)  # after its record: a resume never misses a line
                if stop.received:  # leaving `ckpts` waits for the save
                    raise stop.stopped(step, ckpts.directory)

    if primary:
        nnx.update(run.model, state.params, state.rest)
        save_pretrained(run.model, run_dir / "model")
        log.info("saved the trained model to %s", run_dir / "model")
    return record


def log_model(run: Run) -> None:
    """The parameter table and a one-line summary of the model and data."""
    from zoo.summary import param_table

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


def checkpoint_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """`trainer.ckpt_dir`, by default `<run dir>/checkpoints`; several processes must share one."""
    if cfg.trainer.ckpt_dir is None and jax.process_count() > 1:
        raise ZooError(
            f"trainer.ckpt_dir is required with {jax.process_count()} processes: a directory "
            "they all share, for the checkpoints they write together"
        )
    return Path(cfg.trainer.ckpt_dir) if cfg.trainer.ckpt_dir else run_dir / "checkpoints"
