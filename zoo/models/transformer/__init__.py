"""A small pre-norm Transformer encoder over token sequences: `modeling.py` builds it,
`settings.py` declares its settings (free of JAX, so that options and `--help` never import the
model)."""
