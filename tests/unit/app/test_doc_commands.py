"""Every `train.py` / `eval.py` / `zoo-train` / `zoo-eval` command the README and the docs show
composes and passes the checks, as written (the runs themselves: tests/e2e). The recipes and the
project pages are run in full by tests/e2e/test_doc_recipes.py and test_outside_project.py."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import ROOT

import zoo

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
APPS = {"train.py": "train", "eval.py": "eval", "zoo-train": "train", "zoo-eval": "eval"}
# A third-party package's options (docs/project.md): tests/e2e/test_outside_project.py installs it
# and runs these commands in full.
THIRD_PARTY = {"model=my_mlp", "model=ext_net", "data=ramp", "optim=signed_sgd"}


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(page, app, overrides) of each command of a bash block, continuation lines joined."""
    found = []
    for page in PAGES:
        blocks = re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line.split("  #")[0].replace("$i", "0").replace("$PWD", "."))
                words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*|&|;", w)]  # the shell's
                words = [w.removeprefix(".venv/bin/") for w in words]
                if words[:1] == ["python"]:
                    words = words[1:]
                if words and words[0] in APPS and not THIRD_PARTY & set(words):
                    found.append((page.name, APPS[words[0]], words[1:]))
    return found


COMMANDS = shown_commands()


def test_the_docs_show_commands_of_both_apps():
    assert len(COMMANDS) >= 30 and {app for _, app, _ in COMMANDS} == {"train", "eval"}


@pytest.mark.parametrize(("page", "app", "args"), COMMANDS, ids=lambda v: str(v)[:60])
def test_a_command_the_docs_show_composes_and_passes_the_checks(page, app, args):
    overrides = []
    for arg in args:
        if arg in ("-m", "--multirun") or arg.startswith(("hydra.", "hydra/")) or "${hydra:" in arg:
            continue  # Hydra's own: the sweep, launcher, directories (known only in a Hydra run)
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]  # a sweep's first job
        overrides.append(f"{key}={value}")
    zoo.compose(overrides, app)
