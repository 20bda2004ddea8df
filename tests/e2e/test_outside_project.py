"""The zoo used as an outside project would: docs/project.md ("Use the zoo in your project"),
run file by file and command by command in a fresh virtual environment holding only the zoo's
wheel (built from a copy of this checkout) and what its metadata pulls in.

The venv is built once per test session; its tests form one xdist group (`make test` runs
`--dist loadgroup`), so one worker builds it while the other runs the rest of the suite, and a lock
keeps any other split to one build. The commands run from temporary directories outside the repo."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import seed_reference
from conftest import ROOT
from flax import nnx
from helpers import apps_in_one_process

import zoo

PAGE = ROOT / "docs" / "project.md"  # "Use the zoo in your project"


COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "outputs", "multirun", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
)


def page_sections() -> dict[str, dict[str, list]]:
    """The page's sections: {title: {"files": [(path, text)], "commands": [...]}}.

    A file is a code block whose first line is `# <path>`; a command is a line of a bash block.
    """
    parts = {}
    for chunk in PAGE.read_text().split("\n## ")[1:]:
        title, body = chunk.split("\n", 1)
        files, commands = [], []
        for lang, code in re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S):
            first, rest = code.split("\n", 1)
            if lang == "bash":
                commands += [line.split("  #")[0].strip() for line in code.splitlines()]
            elif re.fullmatch(r"# [\w./-]+", first):
                files.append((first[2:], rest))
        parts[title] = {"files": files, "commands": [c for c in commands if c]}
    return parts


SECTIONS = page_sections()


OUTSIDE = pytest.mark.xdist_group("outside_venv")  # the tests that use the session's venv


def part(prefix: str) -> dict[str, list]:
    (title,) = [t for t in SECTIONS if t.startswith(prefix)]
    return SECTIONS[title]


def write_files(directory: Path, files) -> None:
    for name, text in files:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run(commands, cwd: Path, venv: Path) -> list[subprocess.CompletedProcess]:
    """Run shell commands one by one as a user of `venv` would; each must succeed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env |= {"PATH": f"{venv / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(venv)}
    # builds use the venv's linked setuptools and wheel (pip reads this `0` as "no isolation")
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    results = []
    for command in commands:
        result = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
        results.append(result)
    return results


# Not linked: the zoo itself (the wheel under test brings it) and namespace folders the wheel
# writes into. pip is linked too (the venv is made without one: ensurepip costs 6 s of CPU) and
# gets its `pip` command below, setuptools and wheel come from here as well.
OWN = re.compile(r"(zoo-.*|__editable__.*|.*\.pth|__pycache__)")
PIP_COMMAND = "#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"


def link_dependencies(venv: Path) -> None:
    """Give `venv` this environment's installed packages (the zoo's dependencies) as links, so
    that the page's `pip install` of the wheel finds them installed and installs the zoo alone:
    the same files, in seconds, no network. The wheel's own files are real, in `venv`."""
    (site,) = (venv / "lib").glob("python*/site-packages")
    ours = Path(np.__file__).parents[1]
    for entry in ours.iterdir():
        if OWN.fullmatch(entry.name) or (site / entry.name).exists():
            continue
        if entry.name == "hydra_plugins":  # a namespace the zoo's wheel adds to
            (site / entry.name).mkdir()
            for plugin in entry.iterdir():
                (site / entry.name / plugin.name).symlink_to(plugin)
        else:
            (site / entry.name).symlink_to(entry)
    pip = venv / "bin" / "pip"
    pip.write_text(PIP_COMMAND.format(python=venv / "bin" / "python"))
    pip.chmod(0o755)


@pytest.fixture(scope="session")
def outside(tmp_path_factory):
    """(source copy with dist/, venv): the page's install commands, run once per session."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own basetemp below this one
        shared = shared.parent
    root = shared / "outside-project"
    with open(shared / "outside-project.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "ready").exists():
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(ROOT, root / "zoo", ignore=COPY_IGNORE)
            venv = root / "venv"
            # sys.executable is a venv's python; `-m venv` bases the new one on the real Python
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            link_dependencies(venv)
            run(part("Install")["commands"], root / "zoo", venv)
            (root / "ready").touch()
    return root / "zoo", root / "venv"


def project(tmp_path: Path, files) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    write_files(directory, files)
    return directory


def last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


@OUTSIDE
def test_the_wheel_holds_every_module_and_config_group(outside):
    source, _ = outside
    (wheel,) = (source / "dist").glob("zoo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {str(p.relative_to(ROOT)) for p in (ROOT / "zoo").rglob("*.py")}
    want |= {str(p.relative_to(ROOT)) for p in (ROOT / "hydra_plugins").rglob("*.py")}
    want |= {
        "zoo/_configs/" + str(p.relative_to(ROOT / "configs"))
        for p in (ROOT / "configs").glob("**/*.yaml")
    }
    assert {"zoo/_configs/train.yaml", "zoo/_configs/eval.yaml"} <= want
    # what experiment=finetune_digits starts from when given nothing
    want |= {str(p.relative_to(ROOT)) for p in (ROOT / "zoo" / "recipes").rglob("*") if p.is_file()}
    assert "zoo/recipes/finetune_digits/parity.npz" in want
    assert want <= names, f"missing from the wheel: {sorted(want - names)}"
    assert "hydra_plugins/__init__.py" not in names  # a namespace other plugins share
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "zoo-train = zoo.app.cli:train_main" in text
        and "deep_nested = zoo.models.deep_nested.settings" in text
    )


@OUTSIDE
def test_an_outside_hydra_app_composes_the_zoo_model_and_gets_the_seeds_numbers(outside, tmp_path):
    _, venv = outside
    app = part("1.")
    directory = project(tmp_path, app["files"])
    default, custom = run(app["commands"], directory, venv)

    out = last_json(default.stdout)
    x = np.asarray(out["x"], np.float32)
    want = seed_reference.deep_nested_forward(0.0, x, 8.0)
    np.testing.assert_array_equal(np.asarray(out["y"], np.float32), np.asarray(want))

    out = last_json(custom.stdout)
    x = np.asarray(out["x"], np.float32)
    assert x.shape == (6,)
    model = zoo.create_model(
        "deep_nested", in_features=6, hidden=16, depth=3, activation="gelu", rngs=nnx.Rngs(3)
    )
    np.testing.assert_allclose(out["y"], np.asarray(model(x)), rtol=1e-6, atol=1e-7)


@OUTSIDE
def test_plus_model_on_the_command_line_and_an_apps_own_config_wins_a_name_clash(outside, tmp_path):
    _, venv = outside
    mine = "_target_: zoo.create_model\nname: deep_nested\nin_features: 2\nhidden: {}\n"
    extra = [("conf/bare.yaml", "seed: 0\n"), ("conf/model/mine.yaml", mine.format(3))]
    directory = project(tmp_path, part("1.")["files"] + extra)
    (sweep,) = run(
        ["python my_app.py --multirun --config-name bare +model=deep_nested,mine"], directory, venv
    )
    zoos, mine_out = [json.loads(line) for line in sweep.stdout.splitlines() if line[:1] == "{"]
    want = seed_reference.deep_nested_forward(0.0, np.asarray(zoos["x"], np.float32), 8.0)
    np.testing.assert_array_equal(np.asarray(zoos["y"], np.float32), np.asarray(want))
    assert np.asarray(mine_out["y"]).shape == (3,)  # the app's own option beside the zoo's

    (directory / "conf/model/deep_nested.yaml").write_text(mine.format(5))
    (own,) = run(["python my_app.py"], directory, venv)
    assert np.asarray(last_json(own.stdout)["y"]).shape == (5,)


@OUTSIDE
def test_a_third_party_package_adds_models_data_and_an_optimizer_and_trains_them_by_name(
    outside, tmp_path
):
    _, venv = outside
    models = part("2.")
    directory = project(tmp_path, models["files"])
    _, use, trained, evaluated, *_ = run(models["commands"], directory, venv)
    listed, shape = use.stdout.strip().splitlines()[-2:]
    assert {"deep_nested", "my_mlp", "ext_net"} <= set(ast.literal_eval(listed))
    assert shape == "(2, 1)"
    assert "Warning" not in use.stderr, use.stderr
    run_dir = directory / "runs" / "mine"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 300 and records[-1]["val_loss"] < records[0]["train_loss"]
    assert json.loads((run_dir / "model" / "config.json").read_text())["model"] == "my_mlp"
    assert f"val_loss = {records[-1]['val_loss']:.6g}" in evaluated.stdout

    # the package's data set and optimizer, chosen by name, from its wheel
    ramp = directory / "runs" / "ramp"
    config = (ramp / "config.yaml").read_text()
    assert "name: ramp" in config and "name: signed_sgd" in config and "slope: 0.5" in config
    records = [json.loads(line) for line in (ramp / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 200 and records[-1]["val_loss"] < 0.2 * records[0]["train_loss"]
    # a model whose output width is none of its settings trains on data=teacher as it is
    ext = directory / "runs" / "ext"
    saved = json.loads((ext / "model" / "config.json").read_text())
    assert saved["model"] == "ext_net" and saved["kwargs"]["out_features"] is None
    assert saved["kwargs"]["width"] == 16
    records = [json.loads(line) for line in (ext / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 100 and records[-1]["val_loss"] < records[0]["train_loss"]

    refusals = [
        ("", "error: model.hidden is required: set model.hidden=<an integer>"),
        ("model.hiden=3", "error: unknown key model.hiden; did you mean model.hidden?"),
        ("model.hidden=0.5", "model.hidden=0.5"),
        ("model=my_mlp_typo", "error: In 'train': Could not find 'model/my_mlp_typo'"),
        ("model.hidden=4 data=ramp data.slpe=2", "error: unknown key data.slpe; did you mean"),
        ("model.hidden=4 data=ramp data.n_train=0", "error: data.n_train=0 is invalid: must be"),
        ("model.hidden=4 optim=signed_sgd optim.lr=0", "error: optim.lr=0.0 is invalid: must be"),
    ]
    # what `zoo-train model=my_mlp <override>` runs, in one process of the venv's Python
    cases = [("train", ["model=my_mlp", *override.split()]) for override, _ in refusals]
    results = apps_in_one_process(cases, tmp_path, venv / "bin" / "python", directory)
    for (override, line), (code, _, stderr) in zip(refusals, results, strict=True):
        assert code == 2, (override, stderr)
        (printed,) = stderr.strip().splitlines()
        assert printed.startswith("error: ") and line in printed, printed


@OUTSIDE
def test_pretrained_files_saved_in_one_process_load_in_another(outside, tmp_path):
    _, venv = outside
    pretrained = part("3.")
    directory = project(tmp_path, pretrained["files"])
    _, load = run(pretrained["commands"], directory, venv)
    assert "same outputs in a new process" in load.stdout
    # and the files are the zoo's: this checkout reads them to the same model
    model = zoo.from_pretrained(directory / "my_model")
    x = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(np.asarray(model(x)), np.load(directory / "expected.npy"))


def test_the_editable_install_from_make_install_finds_the_plugin(tmp_path):
    """This environment (make install) run from outside the checkout, as in a user's project."""
    directory = project(tmp_path, part("1.")["files"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    result = subprocess.run(
        [sys.executable, "my_app.py", "model.hidden=4"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = last_json(result.stdout)
    want = seed_reference.deep_nested_forward(0.0, np.asarray(out["x"], np.float32), 4.0)
    np.testing.assert_array_equal(np.asarray(out["y"], np.float32), np.asarray(want))


def test_the_plugin_registers_the_schemas_without_importing_jax():
    """Hydra imports every plugin at every app's start: the zoo's must stay light."""
    code = textwrap.dedent(
        """
        import sys
        from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
        from hydra.core.config_store import ConfigStore
        from hydra_plugins.zoo_searchpath.zoo_searchpath import ZooSearchPathPlugin

        path = ConfigSearchPathImpl()
        ZooSearchPathPlugin().manipulate_search_path(path)
        ZooSearchPathPlugin().manipulate_search_path(path)  # Hydra may build it again
        print([e.provider for e in path.get_path()])
        print(sorted(ConfigStore.instance().list("model")))
        print(sorted(m for m in ("jax", "flax", "optax") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    providers, options, heavy = result.stdout.strip().splitlines()
    assert providers == "['zoo']"
    families = sorted(
        d.name for d in (ROOT / "zoo" / "models").iterdir() if (d / "settings.py").exists()
    )
    assert options == str([f"{name}.yaml" for name in families])  # one schema per model family
    assert heavy == "[]"
