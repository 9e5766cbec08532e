"""Saved adapters as other engines see them (vLLM, LoRAX): checks that run before you deploy."""
