"""`tuneops`: the Typer app, one command per module of tuneops.cli, and `main`, the console script's entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import demo, deploy, predict, prepare_data, run, schedule, serve, status, sweep, up
from tuneops.cli.options import under_run_main
from tuneops.config.paths import PARAMS_PATH

COMMANDS: dict[str, Callable[..., None]] = {
    "predict": predict.command,
    "serve": serve.command,
    "run": run.command,
    "schedule": schedule.command,
    "deploy": deploy.command,
    "up": up.command,
    "status": status.command,
    "demo": demo.command,
    "prepare-data": prepare_data.command,
    "sweep": sweep.command,
}

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help and errors, as argparse's: rich would add 0.1 s to every start
    context_settings={"max_content_width": 120},  # click's default is 80 columns, argparse's the terminal's
)


@app.callback()
def root(
    ctx: typer.Context,
    params: Annotated[Path, typer.Option(help="params file", metavar="PATH")] = PARAMS_PATH,
) -> None:
    """Fine-tune Hugging Face models for classification or generation, gate them, register them in MLflow and serve
    them (OpenAI's API included).

    `dvc repro` runs the pipeline (ingest -> validate -> tokenize -> train -> evaluate -> register); these commands
    run it on Prefect, serve and query what it registered, check training data, and sweep params."""
    ctx.obj = params


def summary(command: Callable[..., None]) -> str:
    """The first paragraph of a command's docstring: its line in `tuneops --help` (click would cut it at 45 chars)."""
    return (command.__doc__ or "").split("\n\n")[0]


for name, body in COMMANDS.items():
    app.command(name, short_help=summary(body))(under_run_main(body))


def main(argv: list[str] | None = None) -> None:
    """`tuneops ARGS`: exits with the command's status (0 when it returns; 2 for a usage or user error)."""
    app(args=argv, prog_name="tuneops")


if __name__ == "__main__":
    main()
