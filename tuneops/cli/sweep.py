"""`tuneops sweep`: a grid of params as DVC experiments on DVC's queue, and the best that passed the gate."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

from tuneops.cli import options
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.config.paths import PARAMS_PATH


def command(
    ctx: typer.Context,
    set_param: Annotated[
        list[str],
        typer.Option(
            "--set-param",
            "-S",
            metavar="KEY=VALUES",
            show_default=False,
            help="a params.yaml key and its values, as `dvc exp run -S` takes them (e.g. "
            "train.args.learning_rate=1.0e-4,5.0e-5); repeat for a grid",
        ),
    ],
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", parser=options.positive_int, metavar="N", help="experiments at once")
    ] = 1,
    promote: Annotated[
        bool, typer.Option("--promote", help="register the best experiment that passed the gate")
    ] = False,
) -> None:
    """a grid of params as DVC experiments on DVC's queue; --promote registers the best that passed the gate

    Queues one DVC experiment per combination (`dvc exp run --queue evaluate -S ...`: DVC's grid syntax,
    comma-separated values, range(), choice()), runs them with `dvc queue start -j N`, waits, and shows each with its
    metrics and the gate's verdict.

    Experiments stop at evaluate, so none registers; --promote applies the best that passed the gate
    (`dvc exp apply`) and runs the register stage on it, which checks the gate and the champion again. Needs a git
    repository with a commit."""
    from tuneops.jobs.sweep import sweep  # start-up: 4 ms of pydantic models, on every `tuneops --help`

    params_path = options.params_path(ctx)
    if params_path.resolve() != PARAMS_PATH.resolve():
        raise UserError(f"sweep: DVC experiments vary {PARAMS_PATH} (what dvc.yaml reads), not {params_path}")
    params = load_params(params_path)
    sweep(params, yaml.safe_load(params_path.read_text(encoding="utf-8")), set_param, jobs, promote)
