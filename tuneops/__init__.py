"""tuneops: fine-tune GPT-2 (and other Hugging Face models) on your own data, gate it, register it, serve it.

The library the `tasks/` stages, the `flows/` and the front-ends share, in subpackages that are its layers (each
imports only those before it; tests/unit/test_layers.py holds them to it):

    config/      params, paths, records, errors, how a stage runs
    io/          atomic files, dvc.lock checks, the Hub probe
    data/        sources, splits, templates, tokens, the offline sample
    models/      loading, architecture quirks, batches
    quality/     data checks: Great Expectations suites, prepare-data, the review page
    evaluation/  metrics, LM scoring, the gate
    training/    the Trainer, checkpoints, devices, torchrun
    registry/    MLflow's registry, the catalog of servable versions
    inference/   generation, batching, predict
    jobs/        fine-tuning jobs, files, Prefect orchestration, sweeps
    serve/       the HTTP app: OpenAI's routes, files and jobs routes, /predict
    cli/         the `tuneops` command, one module per command

Every DVC stage depends on this file, so it imports nothing: a change here would rerun the whole pipeline.
"""

__version__ = "0.2.0"
