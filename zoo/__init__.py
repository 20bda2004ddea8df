"""zoo: a configurable model zoo for JAX and Flax NNX.

The public API is loaded lazily so that importing a light submodule (the Hydra plugin imports
`zoo.config`) does not pull in JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "create_model": "zoo.registry",
    "get_model_class": "zoo.registry",
    "list_models": "zoo.registry",
    "model_spec": "zoo.registry",
    "register_model": "zoo.registry",
    "ZooError": "zoo.errors",
    "deep_nested_forward": "zoo.models.deep_nested",
    "save_pretrained": "zoo.pretrained",
    "from_pretrained": "zoo.pretrained",
    "train": "zoo.api",
    "compose": "zoo.api",
    "setting": "zoo.declarations",
    "declare": "zoo.declarations",
    "model_settings": "zoo.registry",
    "load_weights": "zoo.surgery",
    "LoadReport": "zoo.surgery",
    "inspect_weights": "zoo.inspection",
    "diff_weights": "zoo.inspection",
}

__all__ = [
    "LoadReport",
    "ZooError",
    "compose",
    "create_model",
    "declare",
    "deep_nested_forward",
    "diff_weights",
    "from_pretrained",
    "get_model_class",
    "inspect_weights",
    "list_models",
    "load_weights",
    "model_settings",
    "model_spec",
    "register_model",
    "save_pretrained",
    "setting",
    "train",
]

if TYPE_CHECKING:
    from zoo.api import compose, train
    from zoo.declarations import declare, setting
    from zoo.errors import ZooError
    from zoo.inspection import diff_weights, inspect_weights
    from zoo.models.deep_nested import deep_nested_forward
    from zoo.pretrained import from_pretrained, save_pretrained
    from zoo.registry import (
        create_model,
        get_model_class,
        list_models,
        model_settings,
        model_spec,
        register_model,
    )
    from zoo.surgery import LoadReport, load_weights


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
