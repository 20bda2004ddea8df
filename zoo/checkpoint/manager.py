"""The checkpoints of a run: orbax saves of its TrainState, restored only onto the shapes they fit
(when to save: zoo/checkpoint/schedule.py; resuming: zoo/checkpoint/resume.py).

A checkpoint is `<run dir>/checkpoints/<step>/` with two items: `state` (every array of the
TrainState; the typed data key is stored as its raw key data) and `meta` (the step and the run's
config, as JSON). Orbax writes a step under a `*.orbax-checkpoint-tmp*` name and renames it when
complete, so a step directory without that mark is a whole checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from omegaconf import DictConfig

from zoo.checkpoint.resume import config_changes
from zoo.config.plain import to_plain
from zoo.errors import RunStopped, ZooError

log = logging.getLogger(__name__)

PARTIAL_MARK = ".orbax-checkpoint-tmp"
PROBE = ".probe-"  # a directory each save creates and removes first (Checkpoints._probe)
# --- the state as orbax sees it ----------------------------------------------------------------


def _to_saved(state: Any) -> dict[str, Any]:
    """The state's fields by name; one that is None (no EMA) is left out, as in the checkpoints
    of runs from before it existed."""
    saved = state._replace(data_key=jax.random.key_data(state.data_key))._asdict()
    return {name: value for name, value in saved.items() if value is not None}


def _from_saved(saved: dict[str, Any], like: Any) -> Any:
    impl = jax.random.key_impl(like.data_key)
    data_key = jax.random.wrap_key_data(saved["data_key"], impl=impl)
    return type(like)(**saved)._replace(data_key=data_key)


def _layout(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """`path.to.array` -> (shape, dtype) for every array leaf of a pytree or orbax metadata."""
    layout = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = (getattr(k, "name", getattr(k, "key", getattr(k, "idx", k))) for k in path)
        layout[".".join(map(str, keys))] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
    return layout


def _all_finite(tree: Any) -> bool:
    # on the device: a leaf sharded over several processes is not whole in any one of them
    return all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(tree))


# --- checkpoints -------------------------------------------------------------------------------


class Checkpoints:
    """The checkpoints of one run: saved asynchronously, the newest `keep` kept.

    Use as a context manager: leaving it waits for the save in flight, also on an error.
    """

    def __init__(self, directory: str | os.PathLike, keep: int, cfg: DictConfig) -> None:
        self.directory = Path(directory).absolute()  # orbax wants absolute paths
        self._config = to_plain(cfg)
        self.restored_meta: dict[str, Any] | None = None  # the meta of the checkpoint restored
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_partial_saves()
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=False),
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )
        except OSError as err:
            raise ZooError(f"{self.directory}: cannot hold checkpoints ({err})") from None
        drop_closed_loop_callbacks()
        # A failed write is reported once, as one line (SaveFailed), not by every save thread.
        self._quiet = _QuietSaveThreads()
        logging.getLogger("absl").addFilter(self._quiet)

    def _remove_partial_saves(self) -> None:
        """Delete what a save interrupted by a crash left behind (it is never a checkpoint)."""
        if jax.process_index() != 0:
            return
        for path in [*self.directory.glob(f"*{PARTIAL_MARK}*"), *self.directory.glob(f"{PROBE}*")]:
            log.info("removing the interrupted save %s", path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        failure = None
        for finish in (self._manager.wait_until_finished, self._manager.close):
            try:
                finish()
            except Exception as err:  # the save in flight failed: see save()
                failure = failure or err
        if failure is None and not isinstance(exc, SaveFailed):
            logging.getLogger("absl").removeFilter(self._quiet)
            return
        # A failed save's threads may still be reporting: they stay quiet until the app ends.
        if isinstance(exc, SaveFailed):  # said already
            return
        stopped = self._save_failed(failure, "at its end")
        if exc is None or isinstance(exc, RunStopped):  # its checkpoint is what failed
            raise stopped from failure
        log.warning("%s", stopped)  # the error on its way out says why the run stopped

    def _save_failed(self, err: BaseException, when: str) -> SaveFailed:
        why = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        return SaveFailed(
            f"cannot write checkpoints in {self.directory} ({why}): the run stopped "
            f"{when}; make room there or fix the directory, then continue from the latest "
            "complete checkpoint with trainer.resume=true"
        )

    def _probe(self, step: int) -> None:
        """Create and remove a directory where orbax will create the step's: orbax reports a
        failure to create it only after its other save threads wait minutes for it (a full or
        vanished disk). A probe a kill leaves behind is removed like a partial save."""
        probe = tempfile.mkdtemp(prefix=f"{PROBE}{step}-", dir=self.directory)
        with contextlib.suppress(FileNotFoundError):  # removed already by process 0's start
            os.rmdir(probe)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: Any, **extra: Any) -> None:
        """Start saving `state` at its step (once a step); the write ends in the background.
        `extra` (JSON) goes into the checkpoint's meta, for `restored_meta` on resume."""
        step = int(state.step)
        if step in self._manager.all_steps():
            return
        meta = {"step": step, "config": self._config} | extra
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_to_saved(state)), meta=ocp.args.JsonSave(meta)
        )
        # The directory may have filled up or gone since the last save: stop, as after SIGTERM,
        # with the checkpoints and records written so far. (orbax waits here for the save before,
        # so its failure comes out here too.)
        try:
            self._probe(step)
            self._manager.save(step, args=args, force=True)
        except Exception as err:
            raise self._save_failed(err, f"at step {step}") from err

    def restore(self, like: Any) -> Any:
        """The latest checkpoint, restored with the shapes, dtypes and shardings of `like`.

        Raises ZooError if it does not fit `like` (the config changed the model's shape or the
        optimizer) or cannot be read.
        """
        step = self.latest_step()
        where = self.directory / str(step)
        older = [s for s in self.steps() if s != step]
        fallback = f"delete {where} to resume from step {older[-1]}" if older else f"delete {where}"
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saved(like))
        drop_closed_loop_callbacks()
        # orbax and tensorstore raise many types for a damaged checkpoint: any is a bad file here
        try:
            on_disk = _layout(self._manager.item_metadata(step)["state"])
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as err:
            raise ZooError(
                f"checkpoint {where} is unreadable ({first_line(err)}); {fallback}"
            ) from err
        if not on_disk:
            raise ZooError(f"checkpoint {where} is unreadable (no array metadata); {fallback}")
        self._check_fits(where, on_disk, _layout(target), meta["meta"])
        try:
            args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
            restored = self._manager.restore(step, args=args)["state"]
        except Exception as err:
            if "tree structures do not match" in str(err):  # e.g. a mask added to the optimizer
                saved_cfg = meta["meta"].get("config") if isinstance(meta["meta"], dict) else None
                changed = config_changes(saved_cfg, self._config, new_keys=True)
                because = f" (config changes: {', '.join(changed)})" if changed else ""
                raise ZooError(
                    f"cannot resume from {where}: this config changes the structure of the "
                    f"optimizer state{because}; resume with the run's config or use a new "
                    "hydra.run.dir"
                ) from err
            raise ZooError(
                f"checkpoint {where} is corrupt ({first_line(err)}); {fallback}"
            ) from err
        if int(restored["step"]) != step or not _all_finite(restored["params"]):
            raise ZooError(f"checkpoint {where} is corrupt (wrong step or values); {fallback}")
        self.restored_meta = meta["meta"] if isinstance(meta["meta"], dict) else {}
        return _from_saved(restored, like)

    def _check_fits(self, where: Path, on_disk: dict, wanted: dict, meta: Any) -> None:
        saved_cfg = meta.get("config") if isinstance(meta, dict) else None
        changed = config_changes(saved_cfg, self._config)
        if on_disk != wanted:
            keys = on_disk.keys() | wanted.keys()
            diffs = [  # parameters first: they say best what changed
                f"{key.removesuffix('.value')} {_shape(on_disk, key)} -> {_shape(wanted, key)}"
                for key in sorted(keys, key=lambda k: (not k.startswith("params."), k))
                if on_disk.get(key) != wanted.get(key)
            ]
            because = f" (config changes: {', '.join(changed)})" if changed else ""
            more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise ZooError(
                f"cannot resume from {where}: this config changes the shape of the model or "
                f"optimizer state{because}: {'; '.join(diffs[:3])}{more}; resume with the "
                "run's config or use a new hydra.run.dir"
            )
        if changed:
            log.warning(
                "resuming with a changed config (%s): the result will differ from an "
                "uninterrupted run",
                ", ".join(changed),
            )


class SaveFailed(ZooError):
    """A checkpoint could not be written (a full disk, a directory gone or read-only)."""


class _QuietSaveThreads(logging.Filter):
    """On the `absl` logger (orbax's): drops the error records, one with its traceback from every
    save thread of a failed save. The failure reaches the run as an exception, reported as one
    line. (No finer test: which file logged is absl's own unless absl made the logger.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class NoCheckpoints:
    """Stands in for `Checkpoints` with `trainer.checkpoints=false` (e.g. `debug=fast`): saves
    nothing and finds nothing to resume from."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).absolute()
        self.restored_meta: dict[str, Any] | None = None

    def __enter__(self) -> NoCheckpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def latest_step(self) -> None:
        return None

    def save(self, state: Any, **extra: Any) -> None:
        pass


def _shape(layout: dict, key: str) -> str:
    return str(layout[key][0]) if key in layout else "absent"


def first_line(err: BaseException) -> str:
    """The gist of an orbax/tensorstore error: its first line, without the tensorstore spec."""
    text = (str(err).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
    text = text if len(text) <= 160 else text[:160] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def drop_closed_loop_callbacks() -> None:
    """When one read of a restore fails, tensorstore still finishes the others and calls back
    into orbax's closed event loop, during or after the error; Python would print each as a
    traceback. Drop those, only those (installed once, before the first read)."""
    previous = sys.unraisablehook
    if getattr(previous, "_zoo_filter", False):
        return

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook._zoo_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
