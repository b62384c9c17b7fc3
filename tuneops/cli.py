"""`tuneops`: the command line for people. The pipeline itself runs through `dvc repro`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tuneops.errors import UserError
from tuneops.params import load_params
from tuneops.paths import PARAMS_PATH
from tuneops.runner import run_main

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def command(fn: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


@command
def cmd_predict(args: argparse.Namespace) -> None:
    from tuneops.predict import predict, read_texts, write_predictions
    from tuneops.registry import load_registered

    if bool(args.texts) == bool(args.file):
        raise UserError("give texts to classify, or --file, not both (see `tuneops predict --help`)")
    texts = args.texts or read_texts(args.file, args.text_column)
    model, tokenizer = load_registered(load_params(args.params).register_, args.model_version)
    write_predictions(texts, predict(model, tokenizer, texts, args.batch_size), args.out)


@command
def cmd_serve(args: argparse.Namespace) -> None:
    from tuneops.serving import Limits, api_key_from_env, check_exposure, create_app, registry_source, serve

    api_key = api_key_from_env()
    check_exposure(args.host, api_key)  # refuse before the slow model load
    served, lookup, load = registry_source(load_params(args.params).register_, args.model_version)
    limits = Limits(max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes)
    refresh = args.refresh_seconds
    app = create_app(served, limits, lookup=lookup, load=load, refresh_seconds=refresh, api_key=api_key)
    serve(app, args.host, args.port, refresh)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, not {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, not {text!r}")
    return value


@command
def cmd_run(args: argparse.Namespace) -> None:
    import os
    import sys

    from flows.retrain import retrain

    if not os.environ.get("PREFECT_API_URL"):
        print(
            "no PREFECT_API_URL: using Prefect's temporary server (runs are not kept after this command)",
            file=sys.stderr,
        )
    state = retrain(params_path=str(args.params), return_state=True)
    print(f"retrain: {state.name}: {state.message}", file=sys.stderr)
    if not state.is_completed():
        raise SystemExit(1)


@command
def cmd_schedule(args: argparse.Namespace) -> None:
    import os
    import sys

    cron = args.cron or load_params(args.params).flow.schedule
    if not cron:
        raise UserError("no schedule: pass --cron or set flow.schedule in params.yaml")
    if not os.environ.get("PREFECT_API_URL"):
        hint = "start `prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        print(
            f"warning: no PREFECT_API_URL, so this schedule lives only as long as this process; {hint}", file=sys.stderr
        )
    from flows.retrain import retrain

    description = f"Scheduled retraining ({cron}) of the dvc.yaml pipeline in {os.getcwd()}"
    retrain.serve(name=args.name, cron=cron, parameters={"params_path": str(args.params)}, description=description)


@command
def cmd_status(args: argparse.Namespace) -> None:
    from flows.ops import champion_line, recent_runs
    from flows.workspace import crash_dead_runs, workspace_free, workspace_tag

    if workspace_free():  # no live run holds this workspace: any of its runs still "Running" died with its process
        crash_dead_runs(workspace_tag(), None, "its process died (found by tuneops status)")

    for line in recent_runs(args.limit):
        print(line)
    print(champion_line(load_params(args.params).register_))


@command
def cmd_demo(args: argparse.Namespace) -> None:
    from tuneops.demo import demo

    demo(args.workspace)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tuneops",
        description="Fine-tune, gate, register and serve text classifiers. `dvc repro` runs the pipeline; "
        "these commands use what it registered.",
    )
    root.add_argument("--params", type=Path, default=PARAMS_PATH, help="params file (default: %(default)s)")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="classify texts with the registered champion")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", type=Path, help="a CSV/TSV/JSONL/Parquet file of texts instead")
    p.add_argument("--text-column", default="text", help="column holding the text in --file (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write JSON lines here instead of stdout")
    p.add_argument("--model-version", type=int, help="a registered version instead of the champion alias")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default: %(default)s)")

    s = sub.add_parser(
        "serve",
        help="serve the champion over HTTP: POST /predict, GET /health",
        description="Serves the champion alias (following it when it moves) or a pinned --model-version. Binding "
        "anything but loopback needs an API key in TUNEOPS_API_KEY; clients send `Authorization: Bearer <key>`.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--model-version", type=int, help="a registered version instead of the champion alias")
    s.add_argument(
        "--max-texts", type=positive_int, default=256, help="most texts in one request (default: %(default)s)"
    )
    s.add_argument("--max-chars", type=positive_int, default=2000, help="longest text accepted (default: %(default)s)")
    s.add_argument(
        "--max-body-bytes", type=positive_int, default=1 << 20, help="largest request body (default: %(default)s)"
    )
    s.add_argument(
        "--refresh-seconds",
        type=seconds,
        default=30.0,
        help="how often to check where the alias points; 0 checks on every request (default: %(default)s)",
    )
    sub.add_parser("run", help="run the retrain flow once (Prefect over the DVC stages)")
    c = sub.add_parser("schedule", help="serve a scheduled deployment of the retrain flow (blocks; Ctrl-C stops)")
    c.add_argument("--cron", help="cron schedule, e.g. '0 3 * * *' (default: flow.schedule in params.yaml)")
    c.add_argument("--name", default="retrain-scheduled", help="deployment name (default: %(default)s)")
    d = sub.add_parser(
        "demo",
        help="the whole pipeline offline on the shipped sample, to a champion and a prediction (~45 s)",
        description="Runs ingest -> validate -> tokenize -> train -> evaluate -> register with `dvc repro` on the "
        "sample tuneops makes (seeded texts, a tokenizer trained on them, a GPT-2 built from config), in a scratch "
        "workspace, then `tuneops predict` from the registered champion. Needs no Hub and leaves this checkout alone.",
    )
    d.add_argument("--workspace", type=Path, help="a new folder for the demo (default: a fresh temporary folder)")
    st = sub.add_parser("status", help="the last retrain runs and their verdicts, and the current champion")
    st.add_argument("--limit", type=int, default=10, help="how many runs (default: %(default)s)")
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run_main(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    main()
