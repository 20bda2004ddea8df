"""State paths and the one glob syntax over them (zoo/paths.py)."""

from __future__ import annotations

import pytest

import zoo
from zoo import paths
from zoo.paths import match, select


@pytest.mark.parametrize(
    ("pattern", "path", "selected"),
    [
        ("middle/inner/kernel", "middle/inner/kernel", True),
        ("middle/*/kernel", "middle/inner/kernel", True),
        ("*/kernel", "middle/inner/kernel", False),  # * stays within one component
        ("**/kernel", "middle/inner/kernel", True),
        ("**/kernel", "kernel", True),  # ** may be no component at all
        ("middle/**/kernel", "middle/kernel", True),
        ("blocks/**", "blocks/attn/query/kernel", True),
        ("head", "head/kernel", True),  # a module selects what is below it
        ("head", "headless/kernel", False),
        ("layers/?/kernel", "layers/0/kernel", True),
        ("layers/[12]/kernel", "layers/0/kernel", False),
        ("*norm/scale", "blocks/attn_norm/scale", False),
        ("**/*norm/scale", "blocks/attn_norm/scale", True),
    ],
)
def test_one_glob_syntax_over_state_paths(pattern, path, selected):
    assert match(pattern, path) is selected


def test_a_pattern_matching_nothing_names_it_and_the_nearest_paths():
    paths = ["head/bias", "head/kernel", "middle/inner/bias", "middle/inner/kernel"]
    assert select(["head", "**/bias"], paths) == ["head/bias", "head/kernel", "middle/inner/bias"]
    with pytest.raises(zoo.ZooError) as err:
        select(["head", "midle/inner/kernel"], paths, what="optim.freeze")
    assert str(err.value) == (
        "optim.freeze 'midle/inner/kernel' matches no path; nearest: middle/inner/kernel, "
        "middle/inner, middle/inner/bias"
    )
    for bad, why in [("", "empty"), ("a//b", "empty component"), ("a**", "whole component")]:
        with pytest.raises(zoo.ZooError, match=why):
            match(bad, "a/b")


@pytest.mark.parametrize(
    ("pattern", "selected"),
    [
        ("/".join(["**"] * 10_000 + ["x"]), False),  # 200 took 97 s, 1,200 a RecursionError
        ("/".join(["**"] * 10_000), True),
        ("/".join(["**", "a"] * 5_000 + ["x"]), False),  # no two ** in a row to merge
        ("/".join(["**", "a"] * 15 + ["**"]), True),
        ("/".join(["**", "*"] * 30), True),
        ("/".join(["**", "*"] * 31), False),  # 31 components wanted, 30 there
    ],
    ids=["10000-**-x", "10000-**", "5000-**-a-x", "15-**-a", "30-**-*", "31-**-*"],
)
def test_globstar_patterns_match_in_linear_steps_however_many_there_are(
    monkeypatch, pattern, selected
):
    """Each component is tested at most once per pattern position: (pattern + 1) x path tests,
    where trying every way the `**` could split the path took exponential time."""
    tests = []
    component_matches = paths.component_matches
    monkeypatch.setattr(
        paths, "component_matches", lambda *args: tests.append(args) or component_matches(*args)
    )
    path = "/".join(["a"] * 30)
    assert match(pattern, path) is selected
    assert len(tests) <= (len(pattern.split("/")) + 1) * 30


def test_a_long_pattern_selects_and_is_named_in_one_short_line():
    every = "/".join(["**"] * 10_000)
    assert select([every], ["head/bias", "middle/inner/kernel"]) == [
        "head/bias",
        "middle/inner/kernel",
    ]
    with pytest.raises(zoo.ZooError) as err:
        select([every + "/x"], ["head/bias"], what="optim.freeze pattern")
    assert str(err.value).startswith("optim.freeze pattern '**/**/")
    assert "/**/x' matches no path; nearest: head/bias" in str(err.value)
    assert len(str(err.value)) < 200
