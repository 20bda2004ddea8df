"""Files from a user's directory read as hostile (zoo.untrusted): a run's config.yaml and
.hydra/*.yaml without YAML aliases, with nesting and size bounded, each problem one line."""

from __future__ import annotations

import os

import pytest
from conftest import compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import zoo
from zoo.app.cli import _eval_task
from zoo.config.store import config_dir
from zoo.untrusted import MAX_YAML_BYTES, MAX_YAML_DEPTH, load_yaml


def alias_bomb(levels: int) -> str:
    """`levels` anchors, each a list of 9 aliases of the one before: 9**levels strings, in a
    few hundred bytes."""
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        name, before = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]")
    last = chr(ord("a") + levels - 1)
    return "\n".join([*lines, f"model: *{last}", f"data: *{last}", ""])


def run_dir_with(tmp_path, text: str):
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # 9 levels (394 bytes) hung eval.py run_dir= past 120 s; 4 keep the old failure short
        (alias_bomb(4), "config.yaml: holds a YAML alias (*a); aliases are not read"),
        ("model: &m {name: mlp}\ndata: *m\n", "config.yaml: holds a YAML alias (*m)"),
        ("[" * 50_000, f"config.yaml: nested deeper than {MAX_YAML_DEPTH} levels"),  # Recursion
        ("a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)), "nested deeper than"),
        ("model: {}\n" + "# padding\n" * (MAX_YAML_BYTES // 10), "larger than 1048576 bytes"),
        ("model: [1, 2", "config.yaml: unreadable config (while parsing a flow sequence"),
        ("model: !!python/object/apply:os.system [ls]", "could not determine a constructor"),
    ],
    ids=["alias-bomb", "alias", "deep-flow", "deep-block", "large", "bad", "python-tag"],
)
def test_a_run_config_with_aliases_deep_nesting_or_too_many_bytes_is_one_line(
    tmp_path, text, message
):
    run_dir = run_dir_with(tmp_path, text)
    with pytest.raises(zoo.ZooError) as err:
        _eval_task(zoo.compose([f"run_dir={run_dir}"], "eval"))
    assert str(err.value).startswith(str(run_dir / "config.yaml")) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_fifo_or_a_directory_in_place_of_a_run_file_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "config.yaml")  # opened without blocking: no hang
    with pytest.raises(zoo.ZooError, match="config.yaml: not a regular file"):
        load_yaml(tmp_path / "config.yaml")
    with pytest.raises(zoo.ZooError, match="x.yaml: no such file"):
        load_yaml(tmp_path / "x.yaml")


def test_what_the_zoo_and_hydra_write_reads_back_unchanged(tmp_path):
    """No alias, nothing too deep: a train config and Hydra's own node, as saved."""
    path = tmp_path / "config.yaml"
    cfg = compose_config("train", ["model=transformer", "data=sequence", "optim.lr_mult={a: 2}"])
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    assert load_yaml(path) == OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_cfg = compose("train", return_hydra_config=True)
    OmegaConf.save(hydra_cfg.hydra, tmp_path / "hydra.yaml")
    saved = OmegaConf.to_yaml(load_yaml(tmp_path / "hydra.yaml"))  # interpolations left as they are
    assert saved == OmegaConf.to_yaml(hydra_cfg.hydra) and "&" not in saved
