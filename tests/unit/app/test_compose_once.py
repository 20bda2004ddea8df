"""zoo.app.compose_once: an app composes its config once, and gets what Hydra's two compositions
give: the same job config and Hydra config for runs, multiruns, sweeps, a mode set in a config,
a `???` group, and the same error for a bad command."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import hydra
import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from zoo.app.compose_once import compose_once
from zoo.config.store import config_dir, register_configs
from zoo.training import run_dir


def own_configs(root: Path) -> Path:
    """An app whose primary config leaves a group `???` and one whose config asks for a sweep."""
    (root / "db").mkdir(parents=True)
    (root / "db" / "a.yaml").write_text("host: a\n")
    (root / "db" / "b.yaml").write_text("host: b\n")
    (root / "needs_db.yaml").write_text("defaults:\n  - db: ???\n  - _self_\nport: 1\n")
    (root / "sweeps.yaml").write_text(
        "defaults:\n  - db: a\n  - _self_\nport: 1\nhydra:\n  mode: MULTIRUN\n"
    )
    return root


def run(directory: Path, name: str, argv: list[str], once: bool, counts: list[int], base: Path):
    """The app's jobs' configs (job and Hydra's, as YAML) and stderr, and its compositions, run
    from `base` with its run and sweep directories there (written `<base>` in what it returns):
    the zoo's callbacks refuse a sweep directory used before."""
    base.mkdir()
    os.chdir(base)
    argv = [*argv, f"hydra.run.dir={base}/run", f"hydra.sweep.dir={base}/sweep"]
    argv += ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # no handler on a closed file
    jobs: list[str] = []

    def task(cfg) -> None:
        hydra_cfg = OmegaConf.to_container(HydraConfig.get())
        jobs.append(OmegaConf.to_yaml(cfg) + OmegaConf.to_yaml(hydra_cfg))

    app = hydra.main(config_path=str(directory), config_name=name, version_base="1.3")(task)
    load = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        counts.append(1)
        return load(self, *args, **kwargs)

    err = io.StringIO()
    argv_before = sys.argv
    sys.argv = [f"{name}.py", *argv]
    ConfigLoaderImpl.load_configuration = counted
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            compose_once() if once else contextlib.nullcontext(),
        ):
            app()
    except SystemExit as exit_:
        jobs.append(f"exit {exit_.code}")
    finally:
        sys.argv = argv_before
        ConfigLoaderImpl.load_configuration = load
        for directory in (base / "run", base / "sweep"):  # the zoo's callbacks lock them
            run_dir.release(directory)
    jobs.append(err.getvalue())
    return [j.replace(str(base), "<base>") for j in jobs]


ZOO = [
    (["model=mlp", "optim.lr=0.5", "trainer.bogus=1"], 0),  # refused by Hydra: no job
    (["model=mlp", "optim.lr=0.5", "seed=3"], 1),
    (["-m", "seed=3"], 1),
    (["seed=3,4"], 0),  # sweep values without -m: Hydra's own error
]


@pytest.mark.slow  # two Hydra apps a case: `make test` runs them, `make test-fast` does not
@pytest.mark.parametrize("argv, jobs", ZOO, ids=[" ".join(a) for a, _ in ZOO])
def test_the_zoos_train_config_is_what_hydra_composes_twice(tmp_path, monkeypatch, argv, jobs):
    register_configs()
    monkeypatch.chdir(tmp_path)
    hydras, ours = [], []
    hydra_jobs = run(config_dir(), "train", argv, False, hydras, tmp_path / "hydra")
    our_jobs = run(config_dir(), "train", argv, True, ours, tmp_path / "ours")
    assert our_jobs == hydra_jobs
    assert len([j for j in our_jobs[:-1] if not j.startswith("exit")]) == jobs
    if jobs == 1 and "-m" not in argv:
        assert (len(hydras), len(ours)) == (2, 1)  # a run: composed once instead of twice
    if "trainer.bogus=1" in argv:
        assert (len(hydras), len(ours)) == (2, 1)  # a refused command too


OWN = [
    ("needs_db", ["db=b"], 1),
    ("needs_db", [], 0),  # You must specify 'db'
    ("needs_db", ["-m"], 0),  # the mode is found past the `???` group; the job stops at it
    ("sweeps", [], 1),  # hydra.mode: MULTIRUN in the config
    ("sweeps", ["db=a,b"], 2),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, argv, jobs", OWN, ids=[f"{n} {' '.join(a)}" for n, a, _ in OWN])
def test_a_missing_group_and_a_mode_in_the_config_are_hydras_own(
    tmp_path, monkeypatch, name, argv, jobs
):
    directory = own_configs(tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    hydra_jobs = run(directory, name, argv, False, [], tmp_path / "hydra")
    our_jobs = run(directory, name, argv, True, [], tmp_path / "ours")
    assert our_jobs == hydra_jobs
    assert len([j for j in our_jobs[:-1] if not j.startswith("exit")]) == jobs


def test_a_config_file_is_parsed_once_per_text_and_each_composition_gets_its_own_copy(tmp_path):
    from hydra import compose, initialize_config_dir

    from zoo.app.compose_once import light_composition

    directory = own_configs(tmp_path / "conf")

    def composed():
        with light_composition(), initialize_config_dir(str(directory), version_base="1.3"):
            return compose("needs_db", ["db=a"])

    first = composed()
    first.db.host = "changed"  # a composition's config is its own
    assert composed().db.host == "a"
    (directory / "db" / "a.yaml").write_text("host: c\n")  # same size, maybe the same mtime
    assert composed().db.host == "c"
