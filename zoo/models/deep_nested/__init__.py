"""The seed's model, OuterModule -> MiddleModule -> InnerLinear, generalised in depth and head:
`modeling.py` builds it, `settings.py` declares its settings (free of JAX, so that options and
`--help` never import the model)."""
