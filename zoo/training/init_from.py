"""A run that starts from saved weights and trains only part of the model: the `init.*` settings
(weights from another run, a checkpoint step or a pretrained directory, by state path) and
`optim.freeze` / `optim.lr_mult` (parameter groups by path pattern), applied while a run is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optax
from flax import nnx

from zoo.config.plain import to_plain
from zoo.errors import ZooError
from zoo.optim.groups import ParamGroups, param_groups, partition_optimizer
from zoo.paths import flat_variables
from zoo.weights.load import LoadReport, load_weights, plan_load
from zoo.weights.sources import WeightSource, open_source

log = logging.getLogger(__name__)

INIT_REPORT = "init_report.json"  # in the run directory: what init.from loaded, path by path


@dataclass(frozen=True)
class InitialWeights:
    """The weights `init.from` names, checked against the model: its opened source and the
    keyword arguments of `init.*` for zoo.weights.load."""

    source_path: str
    source: WeightSource
    options: dict[str, Any]


def check_initial_weights(model: nnx.Module, init_cfg: Any) -> InitialWeights | None:
    """Open the source `init.from` names and plan its load into `model` (which may be abstract:
    `nnx.eval_shape`) without reading a tensor; None when `init.from` is null. A run checks this
    before it builds its model, so a source that does not fit is refused before anything is
    compiled or allocated.

    With `init.strict`, a source that does not fit (a path missing, unexpected or of another
    shape) is one ZooError listing every difference; so is one from which nothing would be loaded
    (all excluded, or nothing fits with `init.strict=false`)."""
    source_path = init_cfg.get("from") if init_cfg is not None else None
    if source_path is None:
        return None
    try:
        source = open_source(source_path)
    except ZooError as err:
        raise ZooError(f"init.from={source_path}: {err}") from None
    options = {
        "rename": to_plain(init_cfg.get("rename")),
        "include": to_plain(init_cfg.get("include")) or None,
        "exclude": to_plain(init_cfg.get("exclude")) or None,
    }
    try:
        planned = plan_load(model, source, strict=False, **options)
    except ZooError as err:  # name the setting: `init.exclude pattern 'hed' matches no path`
        if str(err).startswith(("rename", "include", "exclude")):
            raise ZooError(f"init.{err}") from None
        raise
    if init_cfg.get("strict", True) and not planned.ok:
        raise ZooError(
            f"{planned.problem_line()} (init.strict=false loads what fits and leaves the rest "
            "as initialised; init.exclude=[pattern,...] leaves paths out)"
        )
    if not planned.loaded:  # a run that asked for weights and would start from none
        raise ZooError(
            f"init.from={source_path}: no tensor would be loaded ({planned.counts()}); a run "
            "without init.from starts from fresh weights"
        )
    return InitialWeights(str(source_path), source, options)


def load_initial_weights(model: nnx.Module, initial: InitialWeights | None) -> LoadReport | None:
    """Copy the weights `check_initial_weights` checked into `model`, by path, and log the
    report; None when there are none."""
    if initial is None:
        return None
    report = load_weights(model, initial.source, strict=False, **initial.options)
    log.info("initial weights (init.from=%s):\n%s", initial.source_path, report.table())
    return report


def optimizer_groups(
    params: nnx.State, optim_cfg: Any, train_only: Sequence[str] | None = None
) -> ParamGroups:
    """The parameter groups of `optim.freeze` (no update, no optimizer state) and `optim.lr_mult`
    (a factor on the learning rate, first matching pattern) by path; `params` may be abstract.
    `train_only` (LoRA's adapters): the paths that train when `optim.freeze` is empty, every other
    one frozen. A pattern that matches nothing, or freezing everything, is a ZooError."""
    freeze = to_plain(optim_cfg.get("freeze")) or ()
    if train_only is not None and not freeze:
        trained = set(train_only)
        freeze = [path for path in flat_variables(params) if path not in trained]
    return param_groups(
        params,
        freeze=freeze,
        lr_mult=to_plain(optim_cfg.get("lr_mult")) or None,
        freeze_key="optim.freeze",
        lr_mult_key="optim.lr_mult",
    )


def with_param_groups(
    tx: optax.GradientTransformation, groups: ParamGroups, optim_cfg: Any, lora: bool = False
) -> optax.GradientTransformation:
    """`tx` (the optimizer without clipping) with `groups` (optimizer_groups) applied by path,
    after `optim.clip_norm` clips all trainable gradients together; the groups are logged (with
    `lora`, only how many parameters train)."""
    if lora:  # the listing of every frozen base tensor is no news
        total = sum(groups.sizes.values())
        trainable = total - sum(groups.sizes[p] for p in groups.frozen)
        log.info(
            "trainable parameters: %s of %s (%.3g%%)", f"{trainable:,}", f"{total:,}",
            100 * trainable / max(total, 1),
        )  # fmt: skip
    elif not groups.trivial:
        log.info("parameter groups: %s", groups.describe())
    return partition_optimizer(tx, groups, clip_norm=optim_cfg.get("clip_norm"))
