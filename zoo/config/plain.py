"""A config as plain Python: the one conversion from OmegaConf nodes, and the one flattening into
dotted keys (`model.hidden`), for config diffs on resume and for loggers' parameters.

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def to_plain(value: Any) -> Any:
    """A config node (DictConfig, ListConfig) as plain lists and dicts, interpolations resolved;
    any other value as it is."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def flat_config(cfg: Any, *, keep_empty: bool = True) -> dict[str, Any]:
    """`{"model.hidden": 8, "optim.name": "adam", ...}`: the resolved config's leaves by path.

    Args:
        cfg: a config node or a plain mapping.
        keep_empty: an empty mapping is a leaf of its own (`optim.lr_mult: {}`); with False it
            gives no key at all.

    Returns:
        Each leaf by its dotted path, in the config's order.
    """
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and (node or not keep_empty):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(to_plain(cfg), "")
    return flat
