"""The zoo's Hydra SearchPath plugin (see zoo_searchpath.py); no hydra_plugins/__init__.py."""
