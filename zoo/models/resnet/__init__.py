"""ResNet over NHWC images: `modeling.py` builds it, `settings.py` declares its settings (free of
JAX), `convert.py` maps timm's and Hugging Face's published layouts onto its state paths."""
