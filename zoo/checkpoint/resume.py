"""Resuming a run: the state it starts from (its latest checkpoint, or step 0), its metrics log cut
back to that checkpoint, and what in its config changed since the checkpoint was written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from zoo.checkpoint.schedule import DEFAULT_EVERY_STEPS
from zoo.config.plain import flat_config
from zoo.errors import ZooError
from zoo.files import write_atomically
from zoo.reporting.metrics_log import parse_records

log = logging.getLogger(__name__)

# Keys whose change on resume is expected (a longer run) or harmless; others get a warning.
RESUMABLE_CHANGES = {
    "trainer.resume",
    "trainer.steps",
    "trainer.keep_checkpoints",
    "trainer.ckpt_every_seconds",  # when to save, never where the steps split
}


def config_changes(saved: Any, current: Any, *, new_keys: bool = False) -> list[str]:
    """`key: old -> new` for each setting that differs. Keys the saved config lacks are settings
    added to the zoo since, whose defaults keep the old behaviour: listed only with `new_keys`."""
    if not isinstance(saved, dict):
        return []
    old, new = flat_config(saved, keep_empty=False), flat_config(current, keep_empty=False)
    resumable = RESUMABLE_CHANGES
    if new.get("optim.schedule", "constant") != "constant":  # the schedule spans trainer.steps
        resumable = resumable - {"trainer.steps"}
    keys = sorted((old.keys() | (new.keys() if new_keys else set())) - resumable)
    keys = [k for k in keys if not k.startswith("init.")]  # a resume's weights: the checkpoint's
    return [
        f"{k}: {old.get(k, '(new)')} -> {new.get(k)}"
        for k in keys
        if _effective(k, old.get(k)) != _effective(k, new.get(k))
    ]


def _effective(key: str, value: Any) -> Any:
    """`value` as the run uses it: a null `trainer.ckpt_every` is the default step interval, the
    500 a checkpoint of a run from before null existed holds."""
    if key == "trainer.ckpt_every" and value is None:
        return DEFAULT_EVERY_STEPS
    return value


def keep_metrics_until(path: Path, step: int) -> dict[str, float]:
    """Cut `metrics.jsonl` back to the records up to `step` (atomically); return the last one.

    A last line without its newline is a write cut short by a crash and is dropped; any other
    line that is not a JSON record is an error.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        log.warning("%s is missing: records before step %d are lost", path, step)
        text = ""
    except (OSError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: unreadable ({err})") from None
    *lines, unfinished = text.split("\n")
    if unfinished:
        log.warning("%s: dropping a last line cut short: %r", path, unfinished[:60])
    kept, last = [], {}
    for line, record in zip(lines, parse_records(lines, path, strict=True), strict=True):
        if record is not None and record["step"] <= step:
            kept.append(line + "\n")
            last = record
    write_atomically(path, "".join(kept))
    return last


def starting_state(
    ckpts: Any, state: Any, resume: bool, metrics_path: Path | None
) -> tuple[Any, dict[str, float]]:
    """The state a run starts from and its last metrics record: the latest checkpoint's when
    resuming (with metrics.jsonl cut back to it), else `state` with an empty metrics.jsonl.
    `metrics_path=None` leaves metrics to another process."""
    latest = ckpts.latest_step()
    if resume and latest is not None:
        state = ckpts.restore(state)
        log.info("resuming from the checkpoint at step %d in %s", latest, ckpts.directory)
        return state, keep_metrics_until(metrics_path, latest) if metrics_path else {}
    if latest is not None:
        raise ZooError(
            f"{ckpts.directory} already holds checkpoints (latest step {latest}): pass "
            "trainer.resume=true to continue that run, or use another hydra.run.dir"
        )
    if resume:
        log.warning(
            "trainer.resume=true but %s holds no complete checkpoint: starting from step 0",
            ckpts.directory,
        )
    if metrics_path:
        write_atomically(metrics_path, "")
    return state, {}
