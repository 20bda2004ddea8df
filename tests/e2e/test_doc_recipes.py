"""The docs' fine-tuning recipes (docs/finetuning.md), run command by command as written there
(with fewer steps), in-process; one mistake through the command line."""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_config
from helpers import tensors, train_app_in_process
from omegaconf import OmegaConf

import zoo
from zoo.app.cli import _eval_task
from zoo.errors import ZooError
from zoo.weights.load import LoadReport
from zoo.weights.sources import open_source

# One xdist worker runs them all: the recipes' runs are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("finetune")

PAGE = ROOT / "docs" / "finetuning.md"  # "Fine-tuning and surgery"


FEW_STEPS = ["trainer.steps=20", "trainer.log_every=20", "trainer.eval_every=20"]


def page_recipes() -> dict[str, dict[str, list]]:
    """The section's recipes: {title: {"files": [(name, text)], "commands": [...], "outputs":
    [...]}}; a file is a python block whose first line is `# <name>`, an output a plain block."""
    recipes = {}
    for chunk in PAGE.read_text().split("\n## ")[1:]:
        title, body = chunk.split("\n", 1)
        if not title.startswith("Recipe"):
            continue
        recipe = {"files": [], "commands": [], "outputs": []}
        for lang, code in re.findall(r"```(\w*)\n(.*?)```", body, flags=re.S):
            if lang == "bash":
                lines = (line.split("  #")[0].strip() for line in code.splitlines())
                recipe["commands"] += [line for line in lines if line]
            elif lang == "python":
                first, rest = code.split("\n", 1)
                recipe["files"].append((first.removeprefix("# "), rest))
            else:
                recipe["outputs"].append(code.rstrip("\n"))
        recipes[title[: len("Recipe (a)")]] = recipe
    return recipes


RECIPES = page_recipes()


class Lines(logging.Handler):
    """The messages logged while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_command(line: str) -> int:
    """A command of the page, in-process, from the current directory: train.py with fewer steps
    into its hydra.run.dir, eval.py through the app's task, a python file of the page as a script.
    Returns the exit status eval.py's task asks for (0 for the others)."""
    python, script, *args = shlex.split(line)
    assert python == ".venv/bin/python", line
    if script == "train.py":
        (run_dir,) = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
        overrides = [a for a in args if not a.startswith(("hydra.run.dir=", "trainer.steps="))]
        zoo.train([*overrides, *FEW_STEPS], run_dir=run_dir)
    elif script == "eval.py":
        try:
            _eval_task(zoo.compose(args, "eval"))
        except SystemExit as exit_:
            return exit_.code
    else:
        runpy.run_path(script, run_name="__main__")
    return 0


@dataclass
class Recipes:
    directory: Path  # where the commands ran: runs/digits, runs/parity, runs/shallow, runs/deep
    logged: list[str]


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> Recipes:
    """Recipes (a) and (b) of the page, run command by command in a fresh directory."""
    directory = tmp_path_factory.mktemp("recipes")
    handler, logger = Lines(), logging.getLogger("zoo")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(directory)
            for title in ("Recipe (a)", "Recipe (b)"):
                for name, text in RECIPES[title]["files"]:
                    Path(name).write_text(text)
                for command in RECIPES[title]["commands"]:
                    run_command(command)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return Recipes(directory, handler.messages)


def test_recipe_a_trains_a_new_head_while_the_frozen_body_stays_bitwise(recipes):
    runs = recipes.directory / "runs"
    pretrained, tuned = tensors(runs / "digits" / "model"), tensors(runs / "parity" / "model")
    body = [path for path in tuned if path.startswith("layers/")]
    assert len(body) == 4
    for path in body:
        np.testing.assert_array_equal(tuned[path], pretrained[path], err_msg=path)
    assert tuned["head/kernel"].shape == (64, 2)  # the data's two classes decided the head
    start = open_source(runs / "parity" / "checkpoints" / "0").read(["head/kernel", "head/bias"])
    for path, initial in start.items():
        assert not np.array_equal(tuned[path], initial), f"{path} did not train"

    report = json.loads((runs / "parity" / "init_report.json").read_text())
    assert report["loaded"] == body and report["excluded"] == ["head/bias", "head/kernel"]
    logged, groups = RECIPES["Recipe (a)"]["outputs"]
    assert logged in "\n".join(recipes.logged)  # the tables the page shows are the real ones
    assert groups in recipes.logged


def test_the_experiment_config_is_recipe_a_in_a_file():
    command = RECIPES["Recipe (a)"]["commands"][-1]
    overrides = [a for a in shlex.split(command)[2:] if not a.startswith("hydra.")]
    written = compose_config("train", overrides)
    experiment = compose_config(
        "train",
        ["experiment=finetune_digits", "init.from=runs/digits", "data.path=parity.npz"],
    )
    assert OmegaConf.to_container(experiment) == OmegaConf.to_container(written)


def test_recipe_b_grows_depth_from_the_trained_first_block_bitwise_at_step_0(recipes):
    runs = recipes.directory / "runs"
    shallow = tensors(runs / "shallow" / "model")
    step0 = open_source(runs / "deep" / "checkpoints" / "0")
    assert step0.layout["blocks/inner/kernel"].shape == (3, 8, 8)
    for path, value in step0.read(["middle/inner/kernel", "middle/inner/bias"]).items():
        np.testing.assert_array_equal(value, shallow[path], err_msg=path)
    report = LoadReport(**json.loads((runs / "deep" / "init_report.json").read_text()))
    (shown,) = RECIPES["Recipe (b)"]["outputs"]
    assert report.table() == shown


def test_recipe_c_inspect_and_diff_print_what_the_readme_shows(recipes, capsys, monkeypatch):
    monkeypatch.chdir(recipes.directory)
    inspect_parity, inspect_blocks, *diffs = RECIPES["Recipe (c)"]["commands"]
    run_command(inspect_parity)
    table = capsys.readouterr().out
    saved = tensors(Path("runs/parity/model"))["layers/0/kernel"].astype(np.float64)
    row = next(line for line in table.splitlines() if line.startswith("layers/0/kernel "))
    expected = [saved.mean(), saved.std(), saved.min(), saved.max(), np.sqrt((saved**2).sum())]
    assert row.split()[-6:-1] == [f"{v:.6g}" for v in expected]  # numpy's, on the saved tensor
    run_command(inspect_blocks)
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[3:]]
    assert rows == [f"blocks/inner/{n}[{i}]" for n in ("bias", "kernel") for i in range(3)]
    for command, shown in zip(diffs, RECIPES["Recipe (c)"]["outputs"], strict=True):
        assert run_command(command) == 1  # both pairs differ: exit 1, as diff(1)
        assert capsys.readouterr().out.rstrip("\n") == shown


def test_a_mismatched_head_with_strict_init_stops_before_training_in_one_line(
    recipes, tmp_path, monkeypatch
):
    monkeypatch.chdir(recipes.directory)
    code, stderr = train_app_in_process(
        tmp_path, "model=mlp", "data=npz", "data.path=parity.npz", "init.from=runs/digits"
    )
    assert code == 2
    assert stderr.splitlines() == [
        "error: runs/digits/model/model.safetensors does not fit the model (strict): 2 mismatched: "
        "head/bias (source float32[10], model wants float32[2]), head/kernel (source "
        "float32[64, 10], model wants float32[64, 2]) (init.strict=false loads what fits and "
        "leaves the rest as initialised; init.exclude=[pattern,...] leaves paths out)"
    ]
    assert stderr.strip() in PAGE.read_text()  # as the page shows it
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


BAD = {
    "no source": (["init.from=runs/none"], "runs/none: no such directory; weights come from"),
    "include": (["init.from=runs/digits", "init.include=[layers/2]"], "init.include pattern "),
    "exclude": (["init.from=runs/digits", "init.exclude=[hed]"], "init.exclude pattern 'hed' "),
    "rename": (
        ["init.from=runs/digits", "init.rename=[['^body/(.*)','layers/\\1']]"],
        r"init.rename '^body/(.*)' matches no source path; nearest: ",
    ),
    "rename mapping": (
        ["init.from=runs/digits", "init.rename={body:layers}"],
        "init.rename 'body' matches no source path; nearest: ",
    ),
    "freeze": (["optim.freeze=[layer/0]"], "optim.freeze pattern 'layer/0' matches no path; "),
    "lr_mult": (["optim.lr_mult={hed:2}"], "optim.lr_mult pattern 'hed' matches no path; "),
    "a//b": (["optim.freeze=[a//b]"], "path pattern 'a//b' has an empty component"),
    "factor": (["optim.lr_mult={head:0}"], "optim.lr_mult={'head': 0} is invalid: must be a "),
    "resume": (
        ["init.from=runs/digits", "trainer.resume=true"],
        "init.from and trainer.resume=true cannot be combined",
    ),
    "no init.from": (["init.exclude=[head]"], "init.exclude need init.from=<"),
    # issue 19: a run that would load nothing trained from fresh weights and exited 0
    "all excluded": (
        ["init.from=runs/digits", "init.exclude=[**]"],
        "init.from=runs/digits: no tensor would be loaded (0 loaded, 0 missing, 0 unexpected, "
        "0 mismatched, 6 excluded); a run without init.from starts from fresh weights",
    ),
    "nothing fits": (
        ["init.from=runs/shallow", "init.strict=false"],  # a deep_nested run into an mlp
        "init.from=runs/shallow: no tensor would be loaded (0 loaded, 6 missing, 2 unexpected,",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_source_pattern_or_setting_is_one_line_before_training(
    recipes, tmp_path, monkeypatch, case
):
    overrides, message = BAD[case]
    monkeypatch.chdir(recipes.directory)
    with pytest.raises(ZooError) as err:
        zoo.train(["model=mlp", "data=digits", *overrides], run_dir=tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["mode=inspect"], "mode=inspect needs source=<"),
        (["mode=diff", "a=runs/digits"], "mode=diff needs a=<source> and b=<source> (runs, "),
        (["mode=inspect", "source=runs/digits", "paths=[hed]"], "paths pattern 'hed' matches no"),
    ],
)
def test_inspect_and_diff_without_their_sources_are_one_line(
    recipes, monkeypatch, overrides, message
):
    monkeypatch.chdir(recipes.directory)
    with pytest.raises(ZooError, match=re.escape(message)):
        _eval_task(zoo.compose(overrides, "eval"))
