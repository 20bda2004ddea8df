"""zoo: a configurable model zoo for JAX and Flax NNX.

The public API, loaded lazily so that importing a light submodule (the Hydra plugin imports
`zoo.config`) does not pull in JAX. Each name lives in the subpackage of its concern; README's
Layout says which is which.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "create_model": "zoo.models.registry",
    "get_model_class": "zoo.models.registry",
    "list_models": "zoo.models.registry",
    "model_spec": "zoo.models.registry",
    "register_model": "zoo.models.registry",
    "ZooError": "zoo.errors",
    "deep_nested_forward": "zoo.models.deep_nested.modeling",
    "save_pretrained": "zoo.weights.pretrained",
    "from_pretrained": "zoo.weights.pretrained",
    "train": "zoo.app.api",
    "compose": "zoo.app.api",
    "setting": "zoo.config.fields",
    "declare": "zoo.config.registry",
    "model_settings": "zoo.models.registry",
    "load_weights": "zoo.weights.load",
    "LoadReport": "zoo.weights.load",
    "inspect_weights": "zoo.weights.inspection",
    "diff_weights": "zoo.weights.inspection",
    "generate": "zoo.models.generation",
    "add_lora": "zoo.models.lora",
    "merge_lora": "zoo.models.lora",
    "features": "zoo.models.features",
    "load_exported": "zoo.app.exported",
}

__all__ = [
    "LoadReport",
    "ZooError",
    "compose",
    "create_model",
    "declare",
    "deep_nested_forward",
    "diff_weights",
    "features",
    "from_pretrained",
    "get_model_class",
    "inspect_weights",
    "list_models",
    "load_exported",
    "load_weights",
    "model_settings",
    "model_spec",
    "register_model",
    "save_pretrained",
    "setting",
    "train",
    "generate",
    "add_lora",
    "merge_lora",
]

if TYPE_CHECKING:
    from zoo.app.api import compose, train
    from zoo.app.exported import load_exported
    from zoo.config.fields import setting
    from zoo.config.registry import declare
    from zoo.errors import ZooError
    from zoo.models.deep_nested.modeling import deep_nested_forward
    from zoo.models.features import features
    from zoo.models.generation import generate
    from zoo.models.lora import add_lora, merge_lora
    from zoo.models.registry import (
        create_model,
        get_model_class,
        list_models,
        model_settings,
        model_spec,
        register_model,
    )
    from zoo.weights.inspection import diff_weights, inspect_weights
    from zoo.weights.load import LoadReport, load_weights
    from zoo.weights.pretrained import from_pretrained, save_pretrained


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
