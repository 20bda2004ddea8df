"""From a validated config to the objects a run needs: data, model, optimizer, the jitted steps
and the starting state, on the device mesh."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from zoo import memory
from zoo.checkpoint.schedule import checkpoint_every
from zoo.config.plain import to_plain
from zoo.config.schema import LORA, MODEL_TARGET
from zoo.data.dataset import Dataset, make_dataset
from zoo.data.teacher import model_output_width
from zoo.errors import ZooError
from zoo.models.lora import ADAPTERS, add_lora, lora_of
from zoo.models.registry import create_model
from zoo.optim.groups import ParamGroups
from zoo.optim.optimizers import make_optimizer
from zoo.training import footprint, parallel, sharding
from zoo.training.init_from import (
    InitialWeights,
    check_initial_weights,
    load_initial_weights,
    optimizer_groups,
    with_param_groups,
)
from zoo.training.state import Run, TrainState
from zoo.training.steps import make_steps
from zoo.weights.published_vision import read_published

log = logging.getLogger(__name__)
LORA_STREAM = 0x10A  # folded into the run's seed for the adapters' draws


def model_kwargs(model_cfg: Any) -> tuple[str, dict[str, Any]]:
    """Registry name and constructor arguments from a model config (its `_target_` is ignored:
    models are only ever built through the registry)."""
    kwargs = dict(to_plain(model_cfg))
    kwargs.pop(LORA, None)  # adapters, added after building (lora_settings)
    target = kwargs.pop("_target_", MODEL_TARGET)
    if target != MODEL_TARGET:
        raise ZooError(f"model._target_={target!r} is not allowed; use {MODEL_TARGET} with name")
    return kwargs.pop("name"), kwargs


def fit_to_data(name: str, kwargs: dict[str, Any], data: Dataset) -> dict[str, Any]:
    """Make model `name`'s input and output widths follow the data, logging what changed: the
    inputs' keys (`in_features`, or `vocab_size` and `max_len`), and `out_features` unless the
    model's own output (found by abstract evaluation) is as wide as the targets already."""
    fitted = dict(kwargs)
    inputs = data.model_inputs()
    if not inputs.keys() & fitted.keys():
        raise ZooError(
            f"the data's inputs set model keys {', '.join(inputs)}, but the model has none of "
            "them: it cannot take these inputs"
        )
    fitted |= {key: value for key, value in inputs.items() if key in fitted}
    if "out_features" in fitted and (
        data.task == "classification"
        or model_output_width(name, fitted, data.in_features) != data.out_features
    ):
        fitted["out_features"] = data.out_features
    for key in fitted:
        if fitted[key] != kwargs[key]:
            log.info("model.%s=%s follows the data (was %s)", key, fitted[key], kwargs[key])
    return fitted


def published_normalisation(data_cfg: Any, init_cfg: Any) -> Any:
    """`data_cfg` with the mean and std of the published (timm, Hugging Face) checkpoint that
    `init.from` names, where the data takes them (`data.mean: null`); else `data_cfg`."""
    source = init_cfg.get("from") if init_cfg is not None else None
    if source is None or "mean" not in data_cfg or data_cfg.mean is not None:
        return data_cfg
    published = read_published(source) if Path(str(source)).is_dir() else None
    found = published.mean_std() if published is not None else None
    if found is None:
        return data_cfg
    log.info("data.mean=%s data.std=%s from %s", *found, source)
    return OmegaConf.merge(data_cfg, {"mean": found[0], "std": found[1]})


def build_model(name: str, kwargs: dict[str, Any], seed: int, shardings: Any = None) -> nnx.Module:
    """`create_model(name, rngs=nnx.Rngs(seed), **kwargs)`, initialised in one jitted program:
    at start-up that is one program to load from the compilation cache instead of one per
    operation. The numbers are those of the model built op by op (zoo.models.layers.kept_apart).
    `shardings` (a function of the model's abstract state to its NamedShardings): each array is
    created in its sharding, so no device ever holds a whole sharded tensor."""
    if shardings is None:

        @nnx.jit
        def initialise() -> nnx.Module:
            return _construct(name, kwargs, seed)

        return initialise()
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: _construct(name, kwargs, seed)))

    @partial(jax.jit, out_shardings=shardings(abstract))
    def create() -> nnx.State:
        return nnx.state(_construct(name, kwargs, seed))

    return nnx.merge(graphdef, create())


def _construct(name: str, kwargs: dict[str, Any], seed: int) -> nnx.Module:
    try:
        return create_model(name, rngs=nnx.Rngs(seed), **kwargs)
    except (TypeError, ValueError) as err:
        raise ZooError(f"model {name!r}: {err}") from None


def add_adapters(model: nnx.Module, model_cfg: Any, seed: int) -> list[str] | None:
    """With `model.lora.rank` above 0, LoRA adapters on the layers `model.lora.targets` selects
    (after init.from: on the loaded weights), drawn from `seed`; the adapters' paths, else None."""
    lora = lora_of(model_cfg)
    if lora is None:
        return None
    layers = _add_lora(model, lora, seed)
    adapters = [f"{layer}/{name}" for layer in layers for name in ADAPTERS]
    log.info(
        "LoRA: rank %d adapters (alpha %g) on %d layers: %s",
        lora["rank"],
        lora["alpha"],
        len(layers),
        ", ".join(layers),
    )
    return adapters


def _add_lora(model: nnx.Module, lora: dict[str, Any], seed: int) -> list[str]:
    rngs = nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), LORA_STREAM))
    return add_lora(model, rngs=rngs, **lora)


def checked_before_building(
    abstract_model: nnx.Module, cfg: DictConfig, name: str, kwargs: dict[str, Any]
) -> tuple[InitialWeights | None, ParamGroups]:
    """Refuse, from the model's paths and shapes alone (`abstract_model`, from nnx.eval_shape),
    what would be refused once it is built: `init.*` (the source and how it fits), LoRA's
    `model.lora.targets`, and `optim.freeze` / `optim.lr_mult`; so a refused run compiles and
    allocates nothing. Returns the checked initial weights and the optimizer's parameter groups."""
    initial = check_initial_weights(abstract_model, cfg.get("init"))
    lora, adapted = lora_of(cfg.model), None
    if lora is not None:  # the adapters' paths: with the model, in shapes only

        def with_adapters() -> nnx.Module:
            model = _construct(name, kwargs, cfg.seed)
            layers.extend(_add_lora(model, lora, cfg.seed))
            return model

        layers: list[str] = []
        abstract_model = nnx.eval_shape(with_adapters)
        adapted = [f"{layer}/{adapter}" for layer in layers for adapter in ADAPTERS]
    params = nnx.state(abstract_model, nnx.Param)
    return initial, optimizer_groups(params, cfg.optim, train_only=adapted)


def fuse_steps(setting: bool | None, model: nnx.Module, mesh: Any) -> bool:
    """`trainer.fuse_steps`, or by default: fused unless the model has convolutions and runs on
    the CPU, where XLA runs a convolution's gradient 8 to 20 times slower inside a loop than as
    one jitted step (docs/vision-models.md, benchmarks/vision_bench.py)."""
    if setting is not None:
        return bool(setting)
    on_cpu = all(device.platform == "cpu" for device in mesh.devices.flat)
    convolutions = any(isinstance(node, nnx.Conv) for _, node in nnx.iter_graph(model))
    if on_cpu and convolutions:
        log.info("a dispatch a step: convolutions on the CPU (trainer.fuse_steps=true fuses them)")
        return False
    return True


def initial_state(
    params: nnx.State,
    rest: nnx.State,
    tx: optax.GradientTransformation,
    seed: int,
    ema: bool,
    shardings: Callable[[TrainState], Any] | None = None,
) -> TrainState:
    """Step 0's state around the model's `params` and `rest`, made in one jitted program (the
    optimizer's zeros, the step and the data key; with `ema`, a copy of the parameters), each
    array created in its sharding: `shardings` of the abstract state (default: unspecified)."""

    make = _state_maker(tx, seed, ema)
    if shardings is None:
        return jax.jit(make)(params, rest)
    return jax.jit(make, out_shardings=shardings(jax.eval_shape(make, params, rest)))(params, rest)


def _state_maker(
    tx: optax.GradientTransformation, seed: int, ema: bool
) -> Callable[[nnx.State, nnx.State], TrainState]:
    def make(params: nnx.State, rest: nnx.State) -> TrainState:
        average = jax.tree.map(jnp.copy, params) if ema else None
        step0 = jnp.zeros((), jnp.int32)  # not weakly typed, like a restored step
        return TrainState(params, rest, tx.init(params), step0, jax.random.key(seed), average)

    return make


def parallel_layout(
    cfg: DictConfig, name: str, kwargs: dict[str, Any], abstract_model: nnx.Module, mesh: Any
) -> Any:
    """The placement on `mesh` of the parameters of `abstract_model` (model `name` with `kwargs`,
    shapes only) by `parallel.*` (zoo.training.sharding); ZooError naming the rule and path that
    cannot work."""
    settings = cfg.get("parallel") or {}
    family = sharding.family_rules(name, kwargs) if settings.get("family_rules", False) else []
    return sharding.place(
        abstract_model,
        mesh,
        to_plain(settings.get("rules")) or [],
        family,
        auto_fsdp=bool(settings.get("auto_fsdp", False)),
    )


def build_run(cfg: DictConfig) -> Run:
    """Build data, model and optimizer from a validated config; split the model once.

    Joins a multi-host run first if configured; the mesh (`parallel.mesh`) spans
    `trainer.devices` of every process; the state is created sharded by `parallel.*` (replicated
    by default) and the data replicated."""
    trainer = cfg.trainer
    parallel.initialize_distributed(
        trainer.distributed, trainer.coordinator_address, trainer.num_processes, trainer.process_id
    )
    mesh_axes = to_plain(OmegaConf.select(cfg, "parallel.mesh")) or None
    mesh = parallel.make_mesh(trainer.devices, mesh_axes)
    parallel.check_batch_size(trainer.batch_size, mesh)
    log.info(parallel.describe(mesh))
    if parallel.gpu_left_unused(mesh):
        log.warning(
            "an NVIDIA GPU is visible but JAX runs on the CPU: install JAX's CUDA plugin "
            "(make install ACCEL=cuda12; README: GPUs)"
        )
    name, kwargs = model_kwargs(cfg.model)
    data = make_dataset(published_normalisation(cfg.data, cfg.get("init")), cfg.model)
    kwargs = fit_to_data(name, kwargs, data)
    tx, learning_rate, unclipped = make_optimizer(cfg)
    # from shapes alone, before the model or its state exists: where each tensor goes, and
    # whether each device can hold its share
    abstract_model = nnx.eval_shape(lambda: _construct(name, kwargs, cfg.seed))
    placement = parallel_layout(cfg, name, kwargs, abstract_model, mesh)
    ema = trainer.ema is not None

    def state_layout(abstract: TrainState) -> TrainState:
        return sharding.state_shardings(placement, abstract, mesh)

    abstract_state = jax.eval_shape(
        _state_maker(tx, cfg.seed, ema), *nnx.split(abstract_model, nnx.Param, ...)[1:]
    )
    layout = state_layout(abstract_state)
    state_bytes = 2 * sharding.per_device_bytes(
        abstract_state.params, layout.params
    ) + sharding.per_device_bytes(abstract_state.opt_state, layout.opt_state)
    footprint.check_training_fits(
        abstract_model,
        tx,
        data,
        trainer.batch_size,
        mesh.devices.flat,
        log_points=footprint.log_point_count(
            trainer.steps,
            trainer.log_every,
            trainer.eval_every,
            checkpoint_every(trainer.ckpt_every, trainer.ckpt_every_seconds)[0],
        ),
        state_bytes=state_bytes,
    )
    replicated = parallel.replicated(mesh)

    def model_layout(abstract: nnx.State) -> nnx.State:
        return sharding.param_shardings(placement, abstract, mesh)

    initial, groups = checked_before_building(abstract_model, cfg, name, kwargs)
    model = build_model(name, kwargs, cfg.seed, shardings=model_layout)
    init_report = load_initial_weights(model, initial)
    adapted = add_adapters(model, cfg.model, cfg.seed)
    tx = with_param_groups(unclipped, groups, cfg.optim, lora=adapted is not None)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    # weights loaded by init.from come in whole: each device keeps only its shard (LoRA's
    # adapters, added after the placement was made, are replicated)
    params = parallel.put_global(params, sharding.param_shardings(placement, params, mesh))
    rest = parallel.put_global(rest, jax.tree.map(lambda _: replicated, rest))
    eval_graphdef = nnx.graphdef(model)
    state = initial_state(params, rest, tx, cfg.seed, ema=ema, shardings=state_layout)
    layout = state_layout(state)
    sharding.log_placement(
        placement,
        sharding.per_device_bytes(state.params, layout.params)
        + sharding.per_device_bytes(state.opt_state, layout.opt_state),
        memory.nbytes(state.params) + memory.nbytes(state.opt_state),
        mesh,
    )
    x, y, x_val, y_val = parallel.replicate(data.arrays(), mesh)
    data = replace(data, x_train=x, y_train=y, x_val=x_val, y_val=y_val)
    train_chunk, evaluate = make_steps(
        graphdef,
        eval_graphdef,
        tx,
        data.task,
        trainer.batch_size,
        mesh,
        learning_rate=learning_rate,
        accumulate=trainer.accumulate,
        ema=trainer.ema,
        streamed=data.stream is not None,
        augment=data.augment,
        state_shardings=layout,
        fused=fuse_steps(trainer.get("fuse_steps"), model, mesh),
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
        init_report,
        trainer.accumulate,
        placement,
    )
