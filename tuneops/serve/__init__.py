"""HTTP serving: the FastAPI app (app.py: attaches the routers and handlers, /health, warm-up and batching), who may
call it (auth.py: loopback, or an API key), what one request may cost (limits.py), POST /predict's objects
(predict.py), the whole app's error answers (errors.py: OpenAI's shape on /v1), OpenAI's completions, chat and
models routes (openai/), and the files and fine-tuning jobs routes (finetuning/). It may import anything in the
tuneops library (inference, registry, jobs, data, config, ...), but never tuneops.cli or flows/: the command line
starts the server, not the other way round.
"""
