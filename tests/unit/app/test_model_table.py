"""The docs' table of models (docs/models.md) is generated from the registry and must be up to
date."""

from __future__ import annotations

import pytest

import zoo
from zoo.app import model_table
from zoo.errors import ZooError

# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = [pytest.mark.xdist_group("model_table"), pytest.mark.slow]  # slow: make test only


@pytest.fixture(scope="module")
def table() -> str:
    return model_table.render()


def test_readme_model_table_is_up_to_date(table):
    text = model_table.PAGE.read_text()
    assert model_table.update(text, table) == text, "run: python -m zoo.model_table"


def test_table_has_a_row_per_registered_model_with_a_command_that_fits(table):
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == zoo.list_models()
    commands = {row.split("`")[1]: row.rsplit("| `", 1)[1].rstrip("` |") for row in rows}
    assert commands["deep_nested"] == "python train.py model=deep_nested"
    assert commands["transformer"] == "python train.py model=transformer data=sequence"
    assert "`widths=[64, 64]`" in table and "`causal=false`" in table


def test_check_fails_on_a_stale_readme_and_the_update_fixes_it(tmp_path, monkeypatch, table):
    readme = tmp_path / "README.md"
    stale = f"# x\n\n{model_table.START}\n| old |\n{model_table.END}\n\nmore\n"
    readme.write_text(stale)
    monkeypatch.setattr(model_table, "PAGE", readme)
    monkeypatch.setattr(model_table, "render", lambda: table)
    assert model_table.main(["--check"]) == 1
    assert model_table.main([]) == 0
    assert readme.read_text() == f"# x\n\n{table}\n\nmore\n"
    assert model_table.main(["--check"]) == 0
    with pytest.raises(ZooError, match="no model table markers"):
        model_table.update("# no markers\n", table)
