"""The config, free of JAX: settings declared once (`fields.py`, `types.py`, `checks.py`), the one
registry of components by (group, name) (`registry.py`), the apps' settings (`app_settings.py`),
Hydra schemas and store (`schema.py`, `store.py`), validation (`validate.py`) and `--help`
(`help.py`), and plain conversions (`plain.py`). The Hydra plugin imports it at every start."""
