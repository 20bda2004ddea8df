"""data=sequence: random token sequences and, per position, the token a rule puts there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from zoo.data.dataset import Dataset
from zoo.errors import ZooError

# Sequence rules: token sequences `(n, length)` -> the target token at each position.
SEQUENCE_RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "reverse": lambda x: x[:, ::-1],
    "sort": lambda x: jnp.sort(x, axis=-1),
}


def sequence(cfg: Any, model_cfg: Any) -> Dataset:
    """Random token sequences (ids in [0, vocab_size), fixed length) and, per position, the token
    the rule puts there: `reverse` the sequence or `sort` it. Determined by `cfg.seed`."""
    if cfg.rule not in SEQUENCE_RULES:
        raise ZooError(f"data.rule={cfg.rule!r} is unknown; valid: {', '.join(SEQUENCE_RULES)}")
    n = cfg.n_train + cfg.n_val
    x = jax.random.randint(jax.random.key(cfg.seed), (n, cfg.length), 0, cfg.vocab_size)
    y = SEQUENCE_RULES[cfg.rule](x)
    return Dataset(
        x[: cfg.n_train],
        y[: cfg.n_train],
        x[cfg.n_train :],
        y[cfg.n_train :],
        task="classification",
        num_classes=cfg.vocab_size,
        vocab_size=cfg.vocab_size,
    )
