"""HTTP serving: the FastAPI app (app: /predict, /health, limits, API key, batching), the whole app's error answers
(errors: OpenAI's shape on /v1), OpenAI's completions, chat and models routes (openai/), and the files and
fine-tuning jobs routes (finetuning/). It may import anything in the tuneops library (inference, registry, jobs,
data, config, ...), but never tuneops.cli or flows/: the command line starts the server, not the other way round.
"""
