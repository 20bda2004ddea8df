"""zoo-eval on a run: a damaged saved config is one line."""

from __future__ import annotations

import pytest

from zoo.app.evaluation import evaluate_run
from zoo.errors import ZooError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: [1, 2", "unreadable config (while parsing a flow sequence"),
        ("- 1\n- 2\n", "not a train run's config (a mapping with model, data)"),
    ],
)
def test_eval_of_a_run_whose_saved_config_is_damaged_is_one_line(tmp_path, text, message):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(text)
    with pytest.raises(ZooError) as err:
        evaluate_run(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / '.hydra' / 'config.yaml'}: {message}")
