"""Llama, the decoder Hugging Face's `LlamaForCausalLM` implements: `modeling.py` builds it,
`settings.py` declares its settings (no JAX), `convert.py` maps its published checkpoints."""
