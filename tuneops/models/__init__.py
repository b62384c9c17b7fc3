"""Models and tokenizers: loading them from a Hub id, a folder or a .gguf file (loading.py), the architecture quirks
in one place (quirks.py: pad token, padding side, LoRA's target modules, fused GELU), token ids into tensors masked
by position (batches.py), and the machine's threads and bf16 (hardware.py). May import config/ and io/."""
