"""What resuming reads and changes besides the checkpoint: metrics.jsonl cut back to it (a cut
short or garbled line), and which config changes warn."""

from __future__ import annotations

import pytest

from zoo.checkpoint.resume import config_changes as _changes
from zoo.checkpoint.resume import keep_metrics_until
from zoo.errors import ZooError


def test_resume_cuts_metrics_back_to_the_checkpoint_and_drops_a_cut_short_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 5, "train_loss": 1.5}\n{"step": 10, "train_loss": 1.0}\n'
        '{"step": 15, "train_loss": 0.5}\n{"step": 20, "tr'
    )
    assert keep_metrics_until(path, 10) == {"step": 10, "train_loss": 1.0}
    assert path.read_text() == '{"step": 5, "train_loss": 1.5}\n{"step": 10, "train_loss": 1.0}\n'
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed, not left


def test_a_garbled_metrics_line_is_a_clear_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "train_loss": 1.5}\nnot json\n{"step": 10, "train_loss": 1}\n')
    with pytest.raises(ZooError, match=r"metrics.jsonl:2: not a metrics record"):
        keep_metrics_until(path, 10)


def test_resuming_with_more_steps_warns_only_when_a_schedule_spans_them():
    saved = {"optim": {"schedule": "cosine", "lr": 0.1}, "trainer": {"steps": 100}}
    longer = {"optim": {"schedule": "cosine", "lr": 0.1}, "trainer": {"steps": 200}}
    assert _changes(saved, longer) == ["trainer.steps: 100 -> 200"]
    saved["optim"]["schedule"] = longer["optim"]["schedule"] = "constant"
    assert _changes(saved, longer) == []  # a constant rate: extending the run changes nothing


def test_a_non_integer_step_in_metrics_is_one_line_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "train_loss": 1.0}\n{"step": "10", "train_loss": 0.5}\n')
    with pytest.raises(ZooError, match=r"metrics.jsonl:2: step '10' is not an integer$"):
        keep_metrics_until(path, 10)
