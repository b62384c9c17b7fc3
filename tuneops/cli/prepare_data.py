"""`tuneops prepare-data`: OpenAI's legacy fine_tunes.prepare_data checks on a prompt/completion file, and fixes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import options


def command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="the prompt/completion file (.jsonl, .csv, .tsv, .parquet)", show_default=False
        ),
    ],
    fix: Annotated[bool, typer.Option("--fix", help="apply the fixes and write the prepared file(s)")] = False,
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="the prepared file (default: <name>_prepared.jsonl beside FILE)")
    ] = None,
    report: Annotated[Path | None, typer.Option(metavar="FILE", help="also write the checks as JSON here")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="model or tokenizer (Hub id or local folder) to count lengths in its tokens (default: model.name in "
            "the params file; when that cannot be loaded, lengths are counted in characters, with a warning)",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            parser=options.positive_int,
            metavar="N",
            help="longest example in tokens (default: the model's context length)",
        ),
    ] = None,
    split: Annotated[
        bool | None,
        typer.Option(
            "--split/--no-split",
            show_default=False,
            help="with --fix, also write _train/_valid files (default: only for classification)",
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="accept every recommended fix without asking (the default off a terminal)"),
    ] = False,
) -> None:
    """check a prompt/completion file as OpenAI's fine_tunes.prepare_data did, and fix it (--fix)

    Checks a prompt/completion file (JSONL, CSV, TSV or Parquet) for what OpenAI's legacy
    `openai tools fine_tunes.prepare_data` checked, and prints one row per check: check | verdict
    (ok / warning / error) | observed | fix. The checks: fewer than 100 examples; missing or miscased
    prompt/completion keys; extra fields; empty completions; duplicate pairs; examples longer than the
    model's context in its own tokens; a separator ending every prompt; completions starting with a
    whitespace; a stop sequence ending every completion (not for classification); a long common prefix;
    mostly upper-case text; the task (classification when completions take few values); a split.

    --fix writes <name>_prepared.jsonl (and _train/_valid halves when splitting, by default for
    classification) that passes every check; fixes of errors are always applied, recommended ones are
    asked about on a terminal (--yes accepts them all). Exit status: 0 no error check fails, 1 one
    does (on the file, or on what --fix would write), 2 the file cannot be read."""
    # start-up: pandas, and a tokenizer's transformers, load only when checking a file
    from tuneops.quality.prepare import ask, model_lengths, prepare_data, read_pairs

    pairs = read_pairs(file)  # a bad file fails before the seconds a model takes to load
    lengths, note = model_lengths(model, max_tokens, options.params_path(ctx))
    if note:
        print(f"warning: {note}", file=sys.stderr)
    accept = None if yes or not sys.stdin.isatty() else ask  # None: every recommended fix
    status = prepare_data(file, pairs, lengths, fix=fix, out=out, report_path=report, split=split, accept=accept)
    if status:
        raise SystemExit(status)
