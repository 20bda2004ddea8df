"""zoo.app.composition_memo: a composition that would make a defaults list and merged config made
before takes a copy of them, and gets what Hydra composes itself; an edited or added file, a
node stored again in the ConfigStore or a new search path composes anew."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from zoo.app import composition_memo
from zoo.app.compose_once import light_composition
from zoo.config.store import config_dir


@pytest.fixture
def merges(monkeypatch) -> list[int]:
    """One item for each composition whose defaults list and config were made anew (none kept
    from before the test)."""
    made: list[int] = []
    original = composition_memo._Kept

    def counted(*args, **kwargs):
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(composition_memo, "_Kept", counted)
    monkeypatch.setattr(composition_memo, "_kept", type(composition_memo._kept)())
    return made


def composed(directory: Path, name: str, overrides: list[str], light: bool = True) -> str:
    """The job and Hydra configs as YAML (unresolved), composed with or without the zoo's
    light composition."""
    with initialize_config_dir(str(directory), version_base="1.3"):
        if light:
            with light_composition():
                cfg = compose(name, overrides, return_hydra_config=True)
        else:
            cfg = compose(name, overrides, return_hydra_config=True)
    return OmegaConf.to_yaml(cfg)


COMMANDS = [
    ["model=mlp", "optim.lr=0.5"],
    ["model=mlp", "optim.lr=0.25", "seed=3"],  # the same choices: kept
    ["model=transformer", "data=sequence", "model.d_model=16"],
    ["experiment=sequence_transformer", "trainer.steps=7", "hydra/launcher=basic"],
    ["model=deep_nested", "+init.exclude=[head]", "logger=[csv]"],
]


def test_a_kept_composition_is_what_hydra_composes(merges):
    for overrides in COMMANDS:
        hydras = composed(config_dir(), "train", overrides, light=False)
        assert composed(config_dir(), "train", overrides) == hydras, overrides
        assert composed(config_dir(), "train", overrides) == hydras, overrides  # kept
    assert len(merges) == len(COMMANDS) - 1  # the second command's choices were the first's


def test_each_composition_gets_its_own_config(merges):
    with light_composition(), initialize_config_dir(str(config_dir()), version_base="1.3"):
        first = compose("train", ["model=mlp"])
        OmegaConf.set_struct(first, False)
        first.model.widths.append(7)
        first.extra = 1
        second = compose("train", ["model=mlp"])
    assert 7 not in second.model.widths and "extra" not in second
    assert len(merges) == 1


def own_configs(root: Path) -> Path:
    (root / "db").mkdir(parents=True)
    (root / "db" / "a.yaml").write_text("host: a\n")
    (root / "app.yaml").write_text(
        "defaults:\n  - db: a\n  - optional extra: ${db}\n  - _self_\nport: 1\n"
    )
    return root


def test_an_edited_or_added_file_or_a_node_stored_again_composes_anew(tmp_path, merges):
    directory = own_configs(tmp_path / "conf")
    assert "extra: 1" not in composed(directory, "app", ["port=2"])
    assert "port: 3" in composed(directory, "app", ["port=3"])  # kept
    assert len(merges) == 1

    (directory / "extra").mkdir()  # the optional config now exists
    (directory / "extra" / "a.yaml").write_text("# @package _global_\nextra: 1\n")
    assert "extra: 1" in composed(directory, "app", [])
    (directory / "db" / "a.yaml").write_text("host: c\n")  # same size, maybe the same mtime
    assert "host: c" in composed(directory, "app", [])
    assert len(merges) == 3

    store = ConfigStore.instance()
    store.store(group="db", name="memo_b", node={"host": "b"})
    try:
        assert "host: b" in composed(directory, "app", ["db=memo_b"])
        assert "host: b" in composed(directory, "app", ["db=memo_b"])  # kept
        store.store(group="db", name="memo_b", node={"host": "b2"})
        assert "host: b2" in composed(directory, "app", ["db=memo_b"])
    finally:
        del store.repo["db"]["memo_b.yaml"]
    assert len(merges) == 5

    other = own_configs(tmp_path / "other")  # the same files elsewhere: another search path
    (other / "db" / "a.yaml").write_text("host: other\n")
    assert "host: other" in composed(other, "app", [])
    assert len(merges) == 6
