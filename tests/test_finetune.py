"""Fine-tuning from the command line: `init.from` with its report, `optim.freeze` and
`optim.lr_mult`, `eval.py mode=inspect|diff`; the README's recipes run as written there (with
fewer steps), in-process; subprocesses only where the command line itself is what is proven."""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, compose_config, run_script
from flax import nnx
from omegaconf import OmegaConf
from safetensors.numpy import load_file
from test_long_runs import complete_steps, partial_saves, records, start_run, stop_when

import zoo
from zoo import declarations as decl
from zoo.cli import _eval_task
from zoo.errors import ZooError
from zoo.surgery import LoadReport
from zoo.weights import open_source

# One xdist worker runs them all: the recipes' runs are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("finetune")

SECTION = "## Fine-tuning and surgery"
FEW_STEPS = ["trainer.steps=20", "trainer.log_every=20", "trainer.eval_every=20"]


def readme_recipes() -> dict[str, dict[str, list]]:
    """The section's recipes: {title: {"files": [(name, text)], "commands": [...], "outputs":
    [...]}}; a file is a python block whose first line is `# <name>`, an output a plain block."""
    text = (ROOT / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    recipes = {}
    for chunk in section.split("\n### ")[1:]:
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


RECIPES = readme_recipes()


class Lines(logging.Handler):
    """The messages logged while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_command(line: str) -> int:
    """A README command, in-process, from the current directory: train.py with fewer steps
    into its hydra.run.dir, eval.py through the app's task, a README python file as a script.
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
    """Recipes (a) and (b) of the README, run command by command in a fresh directory."""
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


def tensors(path: Path) -> dict[str, np.ndarray]:
    """A saved model's tensors by state path."""
    return {k.replace(".", "/"): v for k, v in load_file(str(path / "model.safetensors")).items()}


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
    assert logged in "\n".join(recipes.logged)  # the tables the README shows are the real ones
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


def test_a_mismatched_head_with_strict_init_stops_before_training_in_one_line(recipes, tmp_path):
    result = run_script(
        "train.py",
        "model=mlp",
        "data=npz",
        "data.path=parity.npz",
        "init.from=runs/digits",
        f"hydra.run.dir={tmp_path}",
        cwd=recipes.directory,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: runs/digits/model/model.safetensors does not fit the model (strict): 2 mismatched: "
        "head/bias (source float32[10], model wants float32[2]), head/kernel (source "
        "float32[64, 10], model wants float32[64, 2]) (init.strict=false loads what fits and "
        "leaves the rest as initialised; init.exclude=[pattern,...] leaves paths out)"
    ]
    assert result.stderr.strip() in (ROOT / "README.md").read_text()  # as the README shows it
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


# --- freezing and learning-rate factors through a killed and resumed run -------------------------

FROZEN_RUN = [
    "model=mlp",
    "optim.freeze=[layers/0]",
    "optim.lr_mult={head:3,layers:0.5}",
    "trainer.steps=60",
    "trainer.log_every=2",
    "trainer.eval_every=20",
    "trainer.ckpt_every=20",
    "trainer.ckpt_every_seconds=0",  # save at every multiple of ckpt_every, however fast
]


def test_freeze_and_lr_mult_survive_sigkill_and_resume_bitwise(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="zoo")
    whole, run_dir = tmp_path / "whole", tmp_path / "run"
    zoo.train(FROZEN_RUN, run_dir=whole)
    assert (
        "parameter groups: 4,225 trainable parameters, 320 frozen (2 tensors: layers/0/bias, "
        "layers/0/kernel); learning rate x 3 for head/bias, 3 for head/kernel, 0.5 for "
        "layers/1/bias, 0.5 for layers/1/kernel"
    ) in caplog.messages

    proc = start_run(run_dir, tmp_path / "log", *FROZEN_RUN)
    stop_when(proc, lambda: 20 <= max(complete_steps(run_dir), default=0) < 60)
    assert proc.returncode != 0 and not (run_dir / "model").exists()
    zoo.train([*FROZEN_RUN, "trainer.resume=true"], run_dir=run_dir)
    assert partial_saves(run_dir) == []
    assert records(run_dir) == records(whole)
    resumed, uninterrupted = tensors(run_dir / "model"), tensors(whole / "model")
    for path, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg=path)

    initial = zoo.create_model("mlp", rngs=nnx.Rngs(0))  # the run's model: seed 0, teacher's widths
    for path, variable in nnx.to_flat_state(nnx.state(initial, nnx.Param)):
        key = "/".join(map(str, path))
        frozen = key.startswith("layers/0/")
        assert np.array_equal(resumed[key], variable[...]) is frozen, key
    # what the checkpoint holds of the optimizer: adam's moments of the trainable tensors only
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(run_dir / "checkpoints", item_handlers=handlers) as manager:
        saved = manager.item_metadata(60)["state"]["opt_state"]
    moments = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(saved)]
    assert [m for m in moments if "['mu']" in m] == [
        "['inner_states']['lr*0.5']['inner_state'][0][0]['mu']['layers']['1']['bias']['value']",
        "['inner_states']['lr*0.5']['inner_state'][0][0]['mu']['layers']['1']['kernel']['value']",
        "['inner_states']['lr*3']['inner_state'][0][0]['mu']['head']['bias']['value']",
        "['inner_states']['lr*3']['inner_state'][0][0]['mu']['head']['kernel']['value']",
    ]


# --- settings that are mappings, unions, or named like a keyword -------------------------------


@decl.declare("test_finetune", "mapping")
@dataclass(frozen=True)
class MappingSettings:
    from_: str | None = decl.setting(None, "a keyword as a setting name")
    factors: dict[str, float] = decl.setting({}, "pattern -> factor", gt=0, max_items=2)
    pairs: dict[str, str] | list[tuple[str, str]] | None = decl.setting(None, "either form")

    def __post_init__(self) -> None:
        if self.from_ == "nowhere":
            raise decl.SettingError("from=nowhere is refused by the declaration")


def test_mapping_union_and_keyword_settings_are_declared_checked_and_shown():
    settings = {s.name: s for s in decl.settings_of(MappingSettings)}
    assert list(settings) == ["from", "factors", "pairs"]
    node = OmegaConf.structured(decl.schema("test_finetune", "mapping", list(settings.values())))
    assert OmegaConf.to_container(node) == {"from": None, "factors": {}, "pairs": None}
    OmegaConf.set_struct(node, True)
    node.factors.merge_with({"head": 2})  # a command-line mapping adds keys to the default one
    assert node.factors == {"head": 2.0}

    check = lambda values: decl.check_values(  # noqa: E731
        list(settings.values()), values, "x", MappingSettings
    )
    check({"from": "a", "factors": {"a": 1, "b": 0.5}, "pairs": [["^a", "b"]]})
    check({"pairs": {"^a": "b"}})
    for values, message in [
        ({"factors": {"a": 0}}, "x.factors={'a': 0} is invalid: must be a mapping of at most 2 "),
        ({"factors": {"a": 1, "b": 1, "c": 1}}, "must be a mapping of at most 2 entries, each to"),
        ({"factors": [1]}, "x.factors=[1] is invalid"),
        ({"pairs": [["a", "b", "c"]]}, "each [a string, a string]"),
        ({"pairs": {"a": 1}}, "must be null or a mapping of at most 4096 entries, each to a str"),
        ({"from": "nowhere"}, "from=nowhere is refused by the declaration"),
    ]:
        with pytest.raises(decl.SettingError, match=re.escape(message)):
            check(values)
    assert decl.as_text({"head": 2.0, "**/bias": 0.5}) == "{head:2.0,**/bias:0.5}"
