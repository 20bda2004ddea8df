"""Hydra's error messages as one line: the one module that reads Hydra's own wording.

Hydra reports a bad override, an unknown option or key with a multi-line message (and some
errors with a whole traceback); the apps print one `error:` line instead. The patterns here are
Hydra 1.3's (hydra-core is pinned in pyproject.toml; tests/unit/app/test_hydra_errors.py pins the
messages it reads): a new Hydra version is checked there first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from zoo.config.validate import unknown_key

# Hydra's words (a ValueError with a traceback) for a group set to null on the command line
NULL_GROUP = "Config group override must be a string or a list"


def one_line(hydra_message: str, overrides: Sequence[str] = ()) -> str:
    """Hydra's multi-line composition error as one line: what is wrong, and the valid options.
    `overrides`: the command line's, to name the one a traceback from Hydra is about."""
    zoo_errors = [line for line in hydra_message.splitlines() if line.startswith("error: ")]
    if zoo_errors:  # a job in another process (e.g. a submitit launcher) failed on a bad value
        return zoo_errors[-1].removeprefix("error: ")
    if "Traceback (most recent call last):" in hydra_message or NULL_GROUP in hydra_message:
        return _traceback_line(hydra_message, overrides)
    refused = re.search(r"Could not override '([\w.]+)'.*?not in '(\w+)'", hydra_message, re.S)
    if refused and "Key '" in hydra_message:  # a key no schema declares
        return unknown_key(*refused.groups())
    parts, options = [], []
    in_options = False
    for raw in hydra_message.splitlines():
        line = raw.strip()
        if not line or line.startswith(("Set the environment variable", "object_type=")):
            continue
        if line.startswith("Config search path"):
            break
        if line.startswith("Available options"):
            in_options = True
            parts.append(line.rstrip(":").lower())
        elif in_options and raw.startswith("\t"):
            if not line.startswith("zoo_"):  # the schemas are not choices
                options.append(line)
        else:
            parts.append(line)
    text = "; ".join(parts)
    text = f"{text}: {', '.join(options)}" if options else text
    if "Could not find 'hydra/sweeper/optuna'" in text:  # hparams_search=... needs the extra
        text += "; pip install 'zoo[optuna]' (make install includes it)"
    return text


def _traceback_line(message: str, overrides: Sequence[str]) -> str:
    """The exception a traceback ends with, as one line (Hydra prints a whole traceback for an
    error that is not one of its own, e.g. a group set to null)."""
    raised = [
        line
        for line in message.splitlines()
        if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line)
    ]
    text = raised[-1] if raised else message.strip().splitlines()[-1]
    if NULL_GROUP in text:
        groups = [o.partition("=")[0] for o in overrides if re.fullmatch(r"[\w/]+=null", o)]
        group = groups[0] if groups else "<group>"
        return (
            f"{group}=null: a config group cannot be set to null on the command line; leave it "
            f"out (its default), or remove the option a config chose with ~{group}"
        )
    return text[:500]
