"""Models: the registry (`registry.py`), the shared layers (`layers.py`) and the settings they
share (`common_settings.py`), and one folder per family, `<family>/modeling.py` (the modules) with
`<family>/settings.py` (its declaration, free of JAX) beside it. Each family comes in through the
`zoo.models` entry points (pyproject.toml) as every other package's models do."""
