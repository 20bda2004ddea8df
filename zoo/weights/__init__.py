"""Weights by state path: the pretrained format (`format.py`), `save_pretrained` and
`from_pretrained` (`pretrained.py`), where weights come from (`sources.py`), loading by path with
its report (`load.py`), and looking inside and comparing (`inspection.py`)."""
