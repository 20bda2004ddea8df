"""data=teacher: synthetic regression, N(0, 1) inputs and as targets the outputs of a fixed
deep_nested network (its own seed) plus Gaussian noise, as wide as the trained model's output.

The teacher network and the trained model's output width come through the one registry, by
name: data never imports a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.config import registry
from zoo.config.plain import to_plain
from zoo.config.schema import LORA
from zoo.data.dataset import Dataset
from zoo.errors import ZooError

TEACHER = "deep_nested"  # the registered model that makes the targets


def model_output_width(name: str, kwargs: Mapping[str, Any], in_features: int) -> int:
    """The width of the output model `name` gives for inputs of `in_features` features, found
    by abstract evaluation (`nnx.eval_shape`): nothing is allocated or computed.

    Raises:
        ZooError: the model cannot be built with `kwargs`, or takes no such inputs.
    """
    settings = dict(kwargs)
    if "in_features" in settings:
        settings["in_features"] = in_features

    def output() -> jax.Array:
        model = registry.builder("model", name)(
            rngs=nnx.Rngs(0), **registry.arguments("model", name, settings)
        )
        return model(jnp.zeros((1, in_features), jnp.float32))

    try:
        out = nnx.eval_shape(output)
    except (ZooError, TypeError, ValueError) as err:
        raise ZooError(f"cannot tell model {name!r}'s output width ({err})") from None
    if len(out.shape) != 2:
        raise ZooError(
            f"cannot tell model {name!r}'s output width: its output has shape "
            f"{tuple(out.shape)} for inputs of shape (1, {in_features})"
        )
    return int(out.shape[-1])


def teacher(cfg: Any, model_cfg: Any) -> Dataset:
    """Inputs ~ N(0, 1); targets = a fixed deep_nested teacher (own seed) + Gaussian noise."""
    model = dict(to_plain(model_cfg))
    model.pop("_target_", None)
    model.pop(LORA, None)  # adapters do not change the output width
    try:
        width = model_output_width(model.pop("name"), model, int(cfg.in_features))
    except ZooError as err:
        raise ZooError(f"data=teacher {err}") from None
    spec = TeacherSpec(
        int(cfg.in_features),
        int(width),
        int(cfg.teacher_depth),
        str(cfg.teacher_activation),
        int(cfg.teacher_seed),
        int(cfg.seed),
        int(cfg.n_train),
        int(cfg.n_val),
        float(cfg.noise),
    )
    return Dataset(*teacher_arrays(spec), task="regression")


class TeacherSpec(NamedTuple):
    """What decides data=teacher's arrays: hashable, the static argument of `teacher_arrays`."""

    in_features: int
    width: int
    depth: int
    activation: str
    teacher_seed: int
    seed: int
    n_train: int
    n_val: int
    noise: float


# One compiled program instead of a dozen eager ones, and a module-level jit keyed by the spec:
# make_dataset's size check (jax.eval_shape) and the generation share one trace.
@partial(jax.jit, static_argnums=0)
def teacher_arrays(spec: TeacherSpec) -> tuple[jax.Array, ...]:
    settings = {
        "in_features": spec.in_features,
        "hidden": spec.width,
        "depth": spec.depth,
        "activation": spec.activation,
    }
    net = registry.builder("model", TEACHER)(
        rngs=nnx.Rngs(spec.teacher_seed), **registry.arguments("model", TEACHER, settings)
    )
    n, n_train = spec.n_train + spec.n_val, spec.n_train
    key_x, key_noise = jax.random.split(jax.random.key(spec.seed))
    x = jax.random.normal(key_x, (n, spec.in_features))
    y = net(x) + spec.noise * jax.random.normal(key_noise, (n, spec.width))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
