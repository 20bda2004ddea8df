"""Checkpoints: the orbax manager (`manager.py`), when to save (`schedule.py`), and resuming
(`resume.py`: the starting state, the metrics log cut back, config changes)."""
