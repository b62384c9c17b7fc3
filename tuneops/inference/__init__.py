"""Inference from a loaded model: batched generation with its own KV-cached decode loop (generation), its prompts'
tokenizing and fitting (prompts) and log-probabilities (logprobs), the one settings object a completion request
becomes and how it picks each next token (sampling), incremental detokenisation and stop sequences (detokenize),
the serving worker that batches concurrent requests and answers them with typed events (batching), and `tuneops
predict`'s reading and writing (predict). It may import tuneops.config, tuneops.io, tuneops.data and
tuneops.models, never registry/, serve/, cli/ or flows/: the server and the command line call into it, not the
other way round.
"""
