"""Data sets: the `Dataset` and `make_dataset` (`dataset.py`), their settings (`settings.py`, free
of JAX), and one module per kind of data: `teacher.py`, `user_files.py` (npz, csv), `digits.py`,
`sequence.py`, with `arrays.py` turning a user's arrays into a split Dataset."""
