"""`tuneops serve`: every registered model over HTTP, OpenAI's /v1 API and POST /predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import options
from tuneops.config.params import load_params


def command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="HOST", help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="port")] = 8000,
    model_version: Annotated[
        int | None, typer.Option(metavar="N", help="/predict's version instead of the champion alias")
    ] = None,
    max_texts: Annotated[
        int, typer.Option(parser=options.positive_int, metavar="N", help="most texts in one request")
    ] = 256,
    max_chars: Annotated[
        int, typer.Option(parser=options.positive_int, metavar="N", help="longest text accepted")
    ] = 2000,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            parser=options.positive_int,
            metavar="N",
            help="largest request body (default: serve.max_body_bytes in params)",
        ),
    ] = None,
    refresh_seconds: Annotated[
        float,
        typer.Option(
            parser=options.seconds,
            metavar="SECONDS",
            help="how often to check where the alias points; 0 checks on every request",
        ),
    ] = 30.0,
) -> None:
    """serve registered models over HTTP: OpenAI's /v1 API, POST /predict, GET /health

    Serves every registered model over OpenAI's API (GET /v1/models, POST /v1/completions,
    POST /v1/chat/completions, DELETE /v1/models/ID; ids such as <name>@champion, <name>:3, a fine-tuning job's ft:
    id and its checkpoints' ids) and the champion alias (following it when it moves) or a pinned --model-version on
    POST /predict. Cache and batching: params.yaml `serve:`.

    Binding anything but loopback needs an API key in TUNEOPS_API_KEY; clients send `Authorization: Bearer <key>`."""
    # start-up: FastAPI, torch and MLflow load only when serving (the catalog's models alone cost 6 ms)
    from tuneops.inference.engine import set_thread_budget
    from tuneops.registry.catalog import Catalog
    from tuneops.registry.mlflow_registry import MlflowRegistry
    from tuneops.serve.app import Batching, create_app, default_model_id, serve, warm_up
    from tuneops.serve.auth import api_key_from_env, check_exposure
    from tuneops.serve.limits import Limits

    api_key = api_key_from_env()
    check_exposure(host, api_key)  # refuse before the slow model load
    params = load_params(options.params_path(ctx))
    register, knobs = params.register_, params.serve
    catalog = Catalog(
        MlflowRegistry(register, params.generation),
        knobs.model_cache_size,
        register.alias,
        refresh_seconds,
        root=Path.cwd(),  # the project, as for the fine-tuning routes: its jobs/ holds the jobs' checkpoints
    )
    default = default_model_id(register, model_version)
    set_thread_budget(knobs.num_threads)
    engine, fleet = None, None
    if knobs.engine == "vllm":
        from tuneops.inference.vllm_engine import attach  # start-up: only `engine: vllm` needs httpx and the fleet

        fleet, engine = attach(catalog, knobs.vllm, Path.cwd())
    served = warm_up(catalog, default, pinned=model_version is not None)
    if fleet is not None and served is not None and served.generates:
        fleet.wait_ready(served)  # the default model answers through vLLM from the first request
    limits = Limits(
        max_texts=max_texts,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes or knobs.max_body_bytes,
        max_upload_bytes=knobs.max_upload_bytes,
        max_tokens_limit=knobs.max_tokens_limit,
        max_queued_tokens=knobs.max_queued_tokens,
    )
    batching = Batching(window_ms=knobs.batch_window_ms, max_batch_size=knobs.max_batch_size)
    app = create_app(catalog, default, limits, batching=batching, api_key=api_key, engine=engine)
    serve(app, host, port, refresh_seconds)
