"""Every `train.py` / `eval.py` / `zoo-train` / `zoo-eval` command the README and the docs show
composes and passes the checks, as written (the runs themselves: tests/e2e), and every python
block that stands alone runs and gives what its comments say. The recipes and the project pages
are run in full, file by file and command by command, by tests/e2e/test_doc_recipes.py and
tests/e2e/test_outside_project.py."""

from __future__ import annotations

import ast
import re
import shlex

import pytest
from conftest import ROOT

import zoo

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
APPS = {"train.py": "train", "eval.py": "eval", "zoo-train": "train", "zoo-eval": "eval"}
APPS |= {"predict.py": "predict", "export.py": "export", "zoo-predict": "predict"}
APPS |= {"zoo-export": "export"}
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
    first = {}  # a command shown on several pages is composed once, where it is shown first
    for page, app, args in found:
        first.setdefault((app, tuple(args)), (page, app, args))
    return list(first.values())


COMMANDS = shown_commands()


def test_the_docs_show_commands_of_both_apps():
    assert len(COMMANDS) >= 30 and {app for _, app, _ in COMMANDS} >= {"train", "eval"}


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


def standalone_blocks() -> list[tuple[str, str]]:
    """(page, code) of the python blocks that need nothing else (they start with their imports
    and name no file a run would have made)."""
    blocks = []
    for page in PAGES:
        for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            if code.startswith(("import ", "from ")) and "outputs/" not in code:
                blocks.append((page.name, code))
    return blocks


@pytest.mark.parametrize(("page", "code"), standalone_blocks(), ids=lambda v: str(v)[:30])
def test_a_python_block_the_docs_show_runs_and_gives_what_its_comments_say(page, code):
    namespace: dict = {}
    exec(compile(code, page, "exec"), namespace)
    for line in code.splitlines():
        expression, _, comment = line.partition("  # ")
        try:
            shown = ast.literal_eval(comment.strip())
        except (ValueError, SyntaxError):
            continue  # a comment in words
        assert eval(expression, namespace) == shown, line  # noqa: S307 (the docs' own code)
