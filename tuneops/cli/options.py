"""What several commands share: the global --params file, each command's run under run_main, and value checks."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import typer

from tuneops.config.runner import run_main

P = ParamSpec("P")


def params_path(ctx: typer.Context) -> Path:
    """The params file given to `tuneops --params` (the root callback stores it on the context its commands share)."""
    return ctx.obj


def under_run_main(command: Callable[P, None]) -> Callable[P, None]:
    """The command's body under run_main: a UserError is one `error: ...` line and exit 2, a TransientError 75.
    The wrapper keeps the command's signature (functools.wraps), which is what Typer reads its options from."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        run_main(lambda: command(*args, **kwargs))

    return run


def positive_int(text: str | int) -> int:
    """A whole number > 0 (a default arrives as an int, a command-line value as a string)."""
    text = str(text)
    if not text.isdigit() or int(text) == 0:
        raise typer.BadParameter(f"expected a whole number > 0, not {text!r}")
    return int(text)


def seconds(text: str | float) -> float:
    """A finite number of seconds >= 0."""
    value = to_float(text)
    if not 0 <= value < math.inf:
        raise typer.BadParameter(f"expected seconds >= 0, not {str(text)!r}")
    return value


def temperature(text: str | float) -> float:
    """A sampling temperature from 0 to 2, the range OpenAI's API takes."""
    value = to_float(text)
    if not 0 <= value <= 2:
        raise typer.BadParameter(f"expected a temperature from 0 to 2 (as OpenAI's API), not {str(text)!r}")
    return value


def to_float(text: str | float) -> float:
    """The number, or -1 (outside every range above) when the text is none; NaN fails every comparison."""
    try:
        return float(text)
    except ValueError:
        return -1.0
