"""`tuneops predict`: the registered champion (or a pinned version) classifies texts or completes prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import options
from tuneops.config.errors import UserError
from tuneops.config.params import Params, load_params


def command(
    ctx: typer.Context,
    texts: Annotated[
        list[str] | None, typer.Argument(metavar="TEXTS", help="texts to classify", show_default=False)
    ] = None,
    file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="a CSV/TSV/JSONL/Parquet file of texts instead")
    ] = None,
    text_column: Annotated[str, typer.Option(metavar="COLUMN", help="column holding the text in --file")] = "text",
    out: Annotated[Path | None, typer.Option(metavar="FILE", help="write JSON lines here instead of stdout")] = None,
    model_version: Annotated[
        int | None, typer.Option(metavar="N", help="a registered version instead of the champion alias")
    ] = None,
    batch_size: Annotated[int, typer.Option(metavar="N", help="texts per forward pass")] = 64,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            parser=options.positive_int,
            metavar="N",
            help="generation: most tokens per completion (default: the model's own)",
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(parser=options.temperature, metavar="T", help="generation: 0 is greedy, above 0 samples"),
    ] = 0.0,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            metavar="TEXT",
            help="generation: a sequence that ends a completion; repeat for several (default: the model's own)",
        ),
    ] = None,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="generation: each text is a user's message, rendered with the chat template the model was trained "
            "with (its tokenizer's), answered to the end of the assistant's turn",
        ),
    ] = False,
) -> None:
    """classify texts, or complete prompts, with the registered champion

    A classification model answers each text's label and class probabilities; a generation model completes each
    text as a prompt (greedy by default), stopping at the stop sequences it was trained with, or with --chat answers
    each as a user's message through its chat template."""
    # start-up: torch, transformers and MLflow load only when a command needs a model
    from tuneops.inference.predict import complete, predict, read_texts, write_predictions
    from tuneops.models.loading import is_generator
    from tuneops.registry.store import load_registered

    if bool(texts) == bool(file):
        raise UserError("give texts to classify, or --file, not both (see `tuneops predict --help`)")
    inputs = texts or read_texts(file, text_column)
    params = load_params(options.params_path(ctx))
    model, tokenizer = load_registered(params.register_, model_version)
    if not is_generator(model):
        write_predictions(inputs, predict(model, tokenizer, inputs, batch_size), out)
        return
    stops, most = generation(params, model_version, stop, max_tokens)
    prompts = inputs
    if chat:  # as POST /v1/chat/completions asks: the model's template, its end of turn (not the completion stops)
        from tuneops.data.chat import render, turn_end, with_chat_template  # start-up: only --chat renders chat

        tokenizer = with_chat_template(tokenizer, params.generation.chat_template)
        prompts = [render(tokenizer, [{"role": "user", "content": t}], add_generation_prompt=True) for t in inputs]
        stops = [turn_end(tokenizer), *(stop or [])]
    write_predictions(inputs, complete(model, tokenizer, prompts, most, stops, temperature, batch_size), out)


def generation(
    params: Params, version: int | None, stop: list[str] | None, max_tokens: int | None
) -> tuple[list[str], int]:
    """The stop sequences and token budget: the command line's, else the version's own, else params.yaml's."""
    from tuneops.registry.store import registered_generation  # start-up: MLflow

    own_stop, own_max = registered_generation(params.register_, version) or (
        params.generation.stop,
        params.generation.max_new_tokens,
    )
    return (stop if stop else own_stop), (max_tokens or own_max)
