"""GPT-2, the decoder Hugging Face's `GPT2LMHeadModel` implements: `modeling.py` builds it,
`settings.py` declares its settings (no JAX), `convert.py` maps its published checkpoints."""
