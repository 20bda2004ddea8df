"""When checkpoints are saved: wall time as well as steps, and the signals that force a save."""

from __future__ import annotations

from zoo.savepoints import SaveSchedule


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
