"""tuneops: fine-tune GPT-2 (and other Hugging Face models) on your own data, gate it, register it, serve it.

The library the `tasks/` stages, the `flows/` and the `tuneops` command share. Every DVC stage depends on this
file, so it imports nothing: a change here would rerun the whole pipeline.
"""

__version__ = "0.2.0"
