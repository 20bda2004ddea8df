"""The zoo's own models. Each `<name>.py` is registered through the `zoo.models` entry points
(pyproject.toml); each `<name>_settings.py` beside it declares its settings, free of JAX."""
