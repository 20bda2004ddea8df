"""When checkpoints are saved: wall time as well as steps, and the signals that force a save."""

from __future__ import annotations

from zoo.checkpoint.schedule import SaveSchedule, checkpoint_every


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_multiple_of_ckpt_every_saves_only_once_enough_time_has_passed():
    clock = FakeClock()
    saves = SaveSchedule(every_steps=10, every_seconds=60, clock=clock)
    clock.now += 30
    assert not saves.due(10)  # 30 s into the run: too soon
    clock.now += 40
    assert not saves.due(15)  # 70 s, but not a multiple of ckpt_every
    assert saves.due(20)  # 70 s and a multiple
    clock.now += 59
    assert not saves.due(30)  # 59 s after the last save
    assert saves.due(35, forced=True)  # the end or a signal: always
    clock.now += 1
    assert not saves.due(40)  # the forced save restarted the clock
    clock.now += 60
    assert saves.due(40)


def test_zero_seconds_saves_at_every_multiple():
    saves = SaveSchedule(every_steps=5, every_seconds=0, clock=FakeClock())
    assert [step for step in range(1, 21) if saves.due(step)] == [5, 10, 15, 20]


def test_an_explicit_step_interval_saves_at_every_multiple_whatever_the_clock():
    clock = FakeClock()
    saves = SaveSchedule.from_settings(50, None, clock=clock)
    clock.now += 1  # one second into the run: the default gate would wait 300
    assert [step for step in range(1, 201) if saves.due(step)] == [50, 100, 150, 200]


def test_without_a_step_interval_every_500_steps_wait_for_300_seconds():
    clock = FakeClock()
    saves = SaveSchedule.from_settings(None, None, clock=clock)
    assert (saves.every_steps, saves.every_seconds) == (500, 300)
    clock.now += 299
    assert not saves.due(500)
    clock.now += 1
    assert saves.due(1000)


def test_both_set_gate_the_step_interval_and_seconds_alone_gate_the_default():
    assert checkpoint_every(50, 60) == (50, 60)
    assert checkpoint_every(None, 0) == (500, 0)
    assert checkpoint_every(50, None) == (50, 0)
