"""Hydra's messages as one line (zoo/app/hydra_errors.py), pinned to the wording of hydra-core
1.3.8 (pyproject.toml pins it): a changed message fails here first."""

from __future__ import annotations

import gc
import tomllib

import pytest
from conftest import ROOT

import zoo
from zoo.app.hydra_errors import one_line
from zoo.errors import ZooError

UNKNOWN_OPTION = """In 'train': Could not find 'optim/rmsprop'

Available options in 'optim':
\tadam
\tadamw
\tsgd
\tzoo_adam_schema
Config search path:
\tprovider=hydra, path=pkg://hydra.conf

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


SUBMITIT_FAILURE = """Error executing job with overrides: []
Traceback (most recent call last):
  File "x.py", line 1, in <module>
submitit.core.utils.FailedJobError: Job (task=0) failed during processing with trace:
error: model.depth=0 is invalid: must be an integer >= 1
"""


def test_unknown_option_lists_the_choices_but_not_the_schemas():
    assert one_line(UNKNOWN_OPTION) == (
        "In 'train': Could not find 'optim/rmsprop'; available options in 'optim': adam, adamw, sgd"
    )


def test_a_failed_jobs_zoo_error_is_the_line():
    assert one_line(SUBMITIT_FAILURE) == "model.depth=0 is invalid: must be an integer >= 1"


def test_a_search_without_the_optuna_sweeper_names_the_extra():
    message = (
        "In 'hydra/config': Could not find 'hydra/sweeper/optuna'\n\n"
        "Available options in 'hydra/sweeper':\n\tbasic\n"
    )
    assert one_line(message) == (
        "In 'hydra/config': Could not find 'hydra/sweeper/optuna'; available options in "
        "'hydra/sweeper': basic; pip install 'zoo[optuna]' (make install includes it)"
    )


def test_a_group_set_to_null_is_one_short_line_not_hydras_traceback(tmp_path, monkeypatch, capsys):
    from zoo.app import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr("sys.argv", ["train.py", "logger=null"])
    try:
        assert cli.train_app() == 2
    finally:
        gc.unfreeze()  # the app freezes the heap for a process about to end
    assert capsys.readouterr().err == (
        "error: logger=null: a config group cannot be set to null on the command line; leave it "
        "out (its default), or remove the option a config chose with ~logger\n"
    )
    assert list(tmp_path.iterdir()) == []  # no run directory
    with pytest.raises(ZooError, match="^logger=null: a config group cannot be set to null"):
        zoo.compose(["logger=null"])  # the same line from Python
    # any other traceback Hydra prints is its last line
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
    message = traceback + "KeyError: 'x'\n\nSet the environment variable ...\n"
    assert one_line(message) == "KeyError: 'x'"


def test_the_wording_read_is_that_of_the_pinned_hydra():
    """zoo/app/hydra_errors.py reads Hydra's messages; a new Hydra may word them otherwise."""
    import hydra

    pinned = [
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("hydra-core")
    ]
    assert pinned == ["hydra-core==1.3.8"] and hydra.__version__ == "1.3.8"
