"""Where weights come from: a pretrained directory, a train run directory (its `model/`), a
checkpoint step directory (`<run>/checkpoints/<step>`), or a model or `nnx.State` in memory.

A source gives the layout of its tensors (state path -> shape and dtype) before reading any of
them, then reads tensors by path, so callers check everything before they allocate or change
anything. Files are read as plain tensors (safetensors; orbax restored as a raw pytree of numpy
arrays), without building the model that wrote them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from zoo.errors import ZooError
from zoo.models.layers import in_stacked, stacked_paths
from zoo.models.registry import create_model
from zoo.paths import flat_variables
from zoo.weights import format as pretrained
from zoo.weights import published

SOURCE_KINDS = (
    "a pretrained directory (model.safetensors + config.json), a train run directory (with "
    "model/), a checkpoint step directory (<run>/checkpoints/<step>), a model or an nnx.State"
)


class WeightSource:
    """Tensors by state path. `layout` is known before any tensor is read."""

    description: str  # what the source is, for messages

    @property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        raise NotImplementedError

    @property
    def stacked(self) -> frozenset[str]:
        """Paths of the tensors with a leading layer axis: the variables of the stacked modules
        of the model the source holds, where it can tell; empty where it cannot. Only the model's
        own variables: a tensor a file adds below a stacked module is not known to have layers."""
        return frozenset()

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def fitted(self, model: nnx.Module) -> WeightSource:
        """The source as it loads into `model` (abstract or not): itself, for most sources."""
        return self

    def __str__(self) -> str:
        return self.description


class StateSource(WeightSource):
    """A model (RNG state left out) or an `nnx.State` in memory."""

    def __init__(self, tree: nnx.Module | nnx.State) -> None:
        self._variables = flat_variables(tree)
        self._stacked = stacked_tensors(tree) if isinstance(tree, nnx.Module) else frozenset()
        self.description = f"the given {type(tree).__name__}"

    @property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        return {p: jax.ShapeDtypeStruct(v.shape, v.dtype) for p, v in self._variables.items()}

    @property
    def stacked(self) -> frozenset[str]:
        return self._stacked

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        return {p: np.asarray(jax.device_get(self._variables[p][...])) for p in paths}


class PretrainedSource(WeightSource):
    """`model.safetensors` of a pretrained directory; `config.json` only tells what is stacked."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.description = str(self.directory / pretrained.WEIGHTS)

    @functools.cached_property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        return pretrained.tensor_layout(self.directory)

    @functools.cached_property
    def stacked(self) -> frozenset[str]:
        return stacked_tensors(pretrained.abstract_model(self.directory)[2])

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        return pretrained.read_tensors(self.directory, paths)


class PublishedSource(WeightSource):
    """A published checkpoint directory (Hugging Face `config.json` + safetensors, sharded or
    not), its tensors converted to state paths by the family's table (zoo.weights.published)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self._checkpoint = published.PublishedCheckpoint(directory)
        self.description = str(self._checkpoint)

    @property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        return self._checkpoint.layout

    @property
    def stacked(self) -> frozenset[str]:
        return self._checkpoint.stacked

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        return self._checkpoint.read(paths)


class VisionSource(WeightSource):
    """A timm or Hugging Face directory, converted by its family's table
    (zoo.weights.published_vision): tensors by zoo path, for the model the config describes, or
    for the model it is `fitted` to (a ViT's positions resampled to its image size)."""

    def __init__(self, published: Any, model: nnx.Module | None = None) -> None:
        from zoo.weights.published_vision import Conversion, abstract

        self.published = published
        if model is None:
            model = abstract(published.name, published.kwargs, published.directory)
        self._conversion = Conversion(published, model)
        self._stacked = stacked_tensors(model)
        self.description = self._conversion.describe()

    @property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        return self._conversion.layout

    @property
    def stacked(self) -> frozenset[str]:
        return self._stacked

    def fitted(self, model: nnx.Module) -> WeightSource:
        return VisionSource(self.published, model)

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        return self._conversion.read(list(paths))


class CheckpointSource(WeightSource):
    """The parameters (`params` of the TrainState) and running statistics (the floating-point
    variables of its `rest`) of one orbax checkpoint step, restored as
    numpy arrays from the checkpoint's own metadata: no model, config or optimizer is needed."""

    def __init__(self, directory: str | os.PathLike) -> None:
        # Imported here, as orbax: it puts a handler on the root logger at import, which would
        # make a later logging.basicConfig() in the importing program a silent no-op.
        from zoo.checkpoint.manager import PARTIAL_MARK

        self.directory = Path(directory).absolute()  # orbax wants absolute paths
        self.description = str(self.directory)
        if PARTIAL_MARK in self.directory.name:
            raise ZooError(f"{self.directory}: an interrupted save, not a checkpoint")
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self._checkpointer = ocp.Checkpointer(
            ocp.CompositeCheckpointHandler(
                state=ocp.PyTreeCheckpointHandler(), meta=ocp.JsonCheckpointHandler()
            )
        )
        params, rest = self._guarded(self._params_metadata)
        if not isinstance(params, Mapping):
            raise ZooError(f"checkpoint {self.directory} is unreadable (no parameters in 'state')")
        # `.../kernel/value`: the stored tree ends each Variable in its `value`. Beside the
        # parameters, the floating-point variables of `rest` (BatchNorm's running statistics;
        # not the integer RNG counters and keys of dropout).
        leaves = [("params", keys, leaf) for keys, leaf in _flatten(params)]
        if isinstance(rest, Mapping):
            leaves += [
                ("rest", keys, leaf)
                for keys, leaf in _flatten(rest)
                if np.issubdtype(np.dtype(leaf.dtype), np.floating)
            ]
        self._keys = {_state_path(keys): (part, *keys) for part, keys, _ in leaves}
        self._layout = {
            _state_path(keys): jax.ShapeDtypeStruct(tuple(leaf.shape), np.dtype(leaf.dtype))
            for _, keys, leaf in leaves
        }

    def _params_metadata(self) -> tuple[Any, Any]:
        items = self._checkpointer.metadata(self.directory).item_metadata
        state = items.get("state") if items is not None else None
        tree = getattr(state, "tree", None)
        if not isinstance(tree, Mapping):
            return None, None
        return tree.get("params"), tree.get("rest")

    def _guarded(self, action):
        """`action()`, with any orbax or tensorstore failure as one ZooError line."""
        from zoo.checkpoint.manager import drop_closed_loop_callbacks, first_line

        drop_closed_loop_callbacks()
        try:
            return action()
        except Exception as err:  # orbax raises many types for a damaged checkpoint
            raise ZooError(
                f"checkpoint {self.directory} is unreadable ({first_line(err)})"
            ) from None

    @property
    def layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        return self._layout

    @functools.cached_property
    def stacked(self) -> frozenset[str]:
        """From the model the run's saved config names, built abstractly; empty if it cannot be."""
        ocp = self._ocp
        meta = self._guarded(
            lambda: self._checkpointer.restore(
                self.directory, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
        )["meta"]
        model_cfg = (meta or {}).get("config", {}).get("model") if isinstance(meta, dict) else None
        if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("name"), str):
            return frozenset()
        name = model_cfg["name"]
        kwargs = {k: v for k, v in model_cfg.items() if k not in ("_target_", "name", "lora")}
        try:  # by registry name only; the widths that data gave the run do not move any module
            model = nnx.eval_shape(lambda: create_model(name, rngs=nnx.Rngs(0), **kwargs))
        except (ZooError, TypeError, ValueError):
            return frozenset()
        return stacked_tensors(model)

    def read(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        ocp = self._ocp
        item: dict[str, Any] = {}
        for path in paths:
            node = item
            *parents, leaf = self._keys[path]
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = 0  # a placeholder: only the paths named here are restored
        if not item:
            return {}
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        args = ocp.args.PyTreeRestore(item=item, restore_args=as_numpy, partial_restore=True)
        restored = self._guarded(
            lambda: self._checkpointer.restore(self.directory, args=ocp.args.Composite(state=args))
        )["state"]
        return {
            _state_path(keys): np.asarray(leaf)
            for part in ("params", "rest")
            for keys, leaf in _flatten(restored.get(part) or {})
        }


def stacked_tensors(model: nnx.Module) -> frozenset[str]:
    """The paths of `model`'s variables below its stacked modules (abstract models too)."""
    modules = stacked_paths(model)
    return frozenset(path for path in flat_variables(model) if in_stacked(path, modules))


def describe_tensor(info: jax.ShapeDtypeStruct) -> str:
    """A tensor's dtype and shape as messages and reports show them: `float32[4, 8]`."""
    return f"{np.dtype(info.dtype)}{list(info.shape)}"


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _state_path(keys: tuple[str, ...]) -> str:
    return "/".join(keys[:-1] if keys[-1] == "value" else keys)


def open_source(source: Any) -> WeightSource:
    """The WeightSource for `source`: a directory of any of the kinds above, a model, an
    `nnx.State`, or a WeightSource already."""
    if isinstance(source, WeightSource):
        return source
    if isinstance(source, nnx.Module | nnx.State):
        return StateSource(source)
    if not isinstance(source, str | os.PathLike):
        raise ZooError(f"cannot read weights from a {type(source).__name__}; give {SOURCE_KINDS}")
    path = Path(source)
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "no such directory"
        raise ZooError(f"{path}: {problem}; weights come from {SOURCE_KINDS}")
    if published.is_published(path):
        return PublishedSource(path)
    if (path / pretrained.WEIGHTS).exists() or (path / pretrained.CONFIG).exists():
        from zoo.weights.published_vision import read_published

        vision = read_published(path)
        return VisionSource(vision) if vision is not None else PretrainedSource(path)
    if (path / "state").is_dir():
        return CheckpointSource(path)
    if (path / "model").is_dir():
        return PretrainedSource(path / "model")
    steps = _checkpoint_steps(path / "checkpoints") or _checkpoint_steps(path)
    if steps:
        raise ZooError(
            f"{path}: holds no saved model/ (did the run finish?); name a checkpoint step "
            f"directory, e.g. {steps[-1]}"
        )
    raise ZooError(f"{path}: not a source of weights; give {SOURCE_KINDS}")


def _checkpoint_steps(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    steps = [p for p in directory.iterdir() if p.name.isdigit() and (p / "state").is_dir()]
    return sorted(steps, key=lambda p: int(p.name))
