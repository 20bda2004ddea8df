"""What zoo-train does to its process: a second Ctrl-C stops at once with one line; the library
without the app's hook raises KeyboardInterrupt instead."""

from __future__ import annotations

import os
import signal

import pytest

from zoo.app import process
from zoo.training.interrupts import StopRequest


def test_a_second_ctrl_c_stops_at_once_with_one_line(monkeypatch, capsys):
    exits, before = [], signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(os, "_exit", exits.append)
    with StopRequest(process.stop_at_once) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received and exits == []
        os.kill(os.getpid(), signal.SIGINT)
    assert exits == [130]
    assert capsys.readouterr().err.startswith("stopped: Ctrl-C twice: stopped at once; ")
    assert signal.getsignal(signal.SIGINT) is before


def test_the_library_without_the_apps_hook_leaves_the_process_alone(monkeypatch):
    exits, before = [], signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(os, "_exit", exits.append)
    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received
        os.kill(os.getpid(), signal.SIGINT)
    assert exits == [] and signal.getsignal(signal.SIGINT) is before
