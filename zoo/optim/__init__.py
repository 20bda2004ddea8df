"""Optimizers: their settings (`settings.py`, free of JAX), optax builders (`optimizers.py`), and
parameter groups by path, frozen or with their own learning rate (`groups.py`)."""
