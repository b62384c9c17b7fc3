"""`tuneops`: the command line for people. The pipeline itself runs through `dvc repro`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.config.paths import PARAMS_PATH
from tuneops.config.runner import run_main

if TYPE_CHECKING:
    from prefect import Flow

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def command(fn: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


@command
def cmd_predict(args: argparse.Namespace) -> None:
    from tuneops.inference.predict import complete, predict, read_texts, write_predictions
    from tuneops.models.loading import is_generator
    from tuneops.registry.store import load_registered, registered_generation

    if bool(args.texts) == bool(args.file):
        raise UserError("give texts to classify, or --file, not both (see `tuneops predict --help`)")
    texts = args.texts or read_texts(args.file, args.text_column)
    params = load_params(args.params)
    model, tokenizer = load_registered(params.register_, args.model_version)
    if not is_generator(model):
        write_predictions(texts, predict(model, tokenizer, texts, args.batch_size), args.out)
        return
    stop, max_tokens = registered_generation(params.register_, args.model_version) or (
        params.generation.stop,
        params.generation.max_new_tokens,
    )
    stop = args.stop if args.stop is not None else stop
    max_tokens = args.max_tokens or max_tokens
    results = complete(model, tokenizer, texts, max_tokens, stop, args.temperature, args.batch_size)
    write_predictions(texts, results, args.out)


@command
def cmd_serve(args: argparse.Namespace) -> None:
    from tuneops.registry.catalog import Catalog, MlflowRegistry
    from tuneops.serve.app import (
        Batching,
        Limits,
        api_key_from_env,
        check_exposure,
        create_app,
        default_model_id,
        serve,
        warm_up,
    )

    api_key = api_key_from_env()
    check_exposure(args.host, api_key)  # refuse before the slow model load
    params = load_params(args.params)
    register, knobs = params.register_, params.serve
    catalog = Catalog(
        MlflowRegistry(register, params.generation), knobs.model_cache_size, register.alias, args.refresh_seconds
    )
    default = default_model_id(register, args.model_version)
    warm_up(catalog, default, pinned=args.model_version is not None)
    limits = Limits(
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes or knobs.max_body_bytes,
        max_upload_bytes=knobs.max_upload_bytes,
        max_tokens_limit=knobs.max_tokens_limit,
    )
    batching = Batching(window_ms=knobs.batch_window_ms, max_batch_size=knobs.max_batch_size)
    app = create_app(catalog, default, limits, batching=batching, api_key=api_key)
    serve(app, args.host, args.port, args.refresh_seconds)


def retrain_flow() -> Flow:
    """The retrain flow, loaded from its entrypoint in this checkout (flows/ is not installed: it runs from here)."""
    from tuneops.jobs.orchestration import load_retrain

    return load_retrain(Path.cwd())


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


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"expected a temperature from 0 to 2 (as OpenAI's API), not {text!r}")
    return value


@command
def cmd_run(args: argparse.Namespace) -> None:
    import os
    import sys

    retrain = retrain_flow()
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
    retrain = retrain_flow()
    description = f"Scheduled retraining ({cron}) of the dvc.yaml pipeline in {os.getcwd()}"
    retrain.serve(name=args.name, cron=cron, parameters={"params_path": str(args.params)}, description=description)


@command
def cmd_deploy(args: argparse.Namespace) -> None:
    import os
    import sys

    from tuneops.jobs.orchestration import deploy, ensure_pool, require_api

    require_api()
    cron = args.cron or load_params(args.params).flow.schedule
    created = ensure_pool(args.pool)
    description = f"Retraining ({cron or 'on demand'}) of the dvc.yaml pipeline in {os.getcwd()}"
    parameters = {"params_path": str(args.params)}
    deployment = deploy(Path.cwd(), args.pool, args.name, cron=cron, parameters=parameters, description=description)
    pool = f"work pool {args.pool} ({'created' if created else 'exists'}, process)"
    print(f"deployment retrain/{args.name} ({deployment}) on {pool}, schedule {cron or 'none'}", file=sys.stderr)
    print(f"a worker on a machine with this project runs it: prefect worker start --pool {args.pool}", file=sys.stderr)


@command
def cmd_up(args: argparse.Namespace) -> None:
    from tuneops.cli.up import up

    serve_args = ["--host", args.host, "--port", str(args.port)]
    code = up(Path.cwd(), args.pool, serve_args, args.prefect_port)
    if code:
        raise SystemExit(code)


@command
def cmd_status(args: argparse.Namespace) -> None:
    from tuneops.jobs.orchestration import recent_runs
    from tuneops.jobs.workspace import crash_dead_runs, workspace_free, workspace_tag

    if workspace_free():  # no live run holds this workspace: any of its runs still "Running" died with its process
        crash_dead_runs(workspace_tag(), None, "its process died (found by tuneops status)")

    for line in recent_runs(args.limit):
        print(line)
    print(champion_line(load_params(args.params).register_))


@command
def cmd_demo(args: argparse.Namespace) -> None:
    from tuneops.cli.demo import demo

    demo(args.workspace)


@command
def cmd_prepare_data(args: argparse.Namespace) -> None:
    import sys

    from tuneops.quality.prepare import ask, model_lengths, prepare_data, read_pairs

    pairs = read_pairs(args.file)  # a bad file fails before the seconds a model takes to load
    lengths, note = model_lengths(args.model, args.max_tokens, args.params)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    accept = None if args.yes or not sys.stdin.isatty() else ask  # None: every recommended fix
    status = prepare_data(
        args.file, pairs, lengths, fix=args.fix, out=args.out, report_path=args.report, split=args.split, accept=accept
    )
    if status:
        raise SystemExit(status)


@command
def cmd_sweep(args: argparse.Namespace) -> None:
    import yaml

    from tuneops.jobs.sweep import sweep

    if args.params.resolve() != PARAMS_PATH.resolve():
        raise UserError(f"sweep: DVC experiments vary {PARAMS_PATH} (what dvc.yaml reads), not {args.params}")
    params = load_params(args.params)
    sweep(params, yaml.safe_load(args.params.read_text(encoding="utf-8")), args.set_param, args.jobs, args.promote)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tuneops",
        description="Fine-tune, gate, register and serve text classifiers. `dvc repro` runs the pipeline; "
        "these commands use what it registered.",
    )
    root.add_argument("--params", type=Path, default=PARAMS_PATH, help="params file (default: %(default)s)")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        help="classify texts, or complete prompts, with the registered champion",
        description="A classification model answers each text's label and class probabilities; a generation model "
        "completes each text as a prompt (greedy by default), stopping at the stop sequences it was trained with.",
    )
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", type=Path, help="a CSV/TSV/JSONL/Parquet file of texts instead")
    p.add_argument("--text-column", default="text", help="column holding the text in --file (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write JSON lines here instead of stdout")
    p.add_argument("--model-version", type=int, help="a registered version instead of the champion alias")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default: %(default)s)")
    p.add_argument(
        "--max-tokens", type=positive_int, help="generation: most tokens per completion (default: the model's own)"
    )
    p.add_argument(
        "--temperature", type=temperature, default=0.0, help="generation: 0 is greedy, above 0 samples (default: 0)"
    )
    p.add_argument(
        "--stop",
        action="append",
        help="generation: a sequence that ends a completion; repeat for several (default: the model's own)",
    )

    s = sub.add_parser(
        "serve",
        help="serve registered models over HTTP: OpenAI's /v1 API, POST /predict, GET /health",
        description="Serves every registered model over OpenAI's API (GET /v1/models, POST /v1/completions, "
        "POST /v1/chat/completions; ids such as <name>@champion or <name>:3) and the champion alias (following it "
        "when it moves) or a pinned --model-version on POST /predict. Cache and batching: params.yaml `serve:`. "
        "Binding anything but loopback needs an API key in TUNEOPS_API_KEY; clients send "
        "`Authorization: Bearer <key>`.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--model-version", type=int, help="/predict's version instead of the champion alias")
    s.add_argument(
        "--max-texts", type=positive_int, default=256, help="most texts in one request (default: %(default)s)"
    )
    s.add_argument("--max-chars", type=positive_int, default=2000, help="longest text accepted (default: %(default)s)")
    s.add_argument(
        "--max-body-bytes", type=positive_int, help="largest request body (default: serve.max_body_bytes in params)"
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
    dp = sub.add_parser(
        "deploy",
        help="a deployment of the retrain flow on a Prefect process work pool (run by `prefect worker start`)",
        description="Creates the work pool (type process) when missing and deploys the retrain flow from this "
        "checkout on it, with flow.schedule from params.yaml (or --cron). Needs PREFECT_API_URL (a Prefect server a "
        "worker can reach). A worker runs the flow in this checkout's directory: on another machine, the project at "
        "the same path, with the same Prefect API, DVC remote and MLflow tracking server.",
    )
    dp.add_argument("--pool", required=True, help="work pool name, e.g. tuneops")
    dp.add_argument("--name", default="retrain-pool", help="deployment name (default: %(default)s)")
    dp.add_argument("--cron", help="cron schedule (default: flow.schedule in params.yaml; none when that is null)")
    up = sub.add_parser(
        "up",
        help="one machine: a Prefect server (if PREFECT_API_URL is unset), a worker and `tuneops serve`, together",
        description="Starts `prefect server start` when PREFECT_API_URL is unset, `prefect worker start --pool POOL` "
        "and `tuneops serve` (with the files and fine-tuning jobs API); Ctrl-C or SIGTERM stops all three, and so "
        "does any one of them exiting.",
    )
    up.add_argument("--pool", default="tuneops", help="work pool for jobs and the worker (default: %(default)s)")
    up.add_argument("--host", default="127.0.0.1", help="address `tuneops serve` binds (default: %(default)s)")
    up.add_argument("--port", type=int, default=8000, help="port of `tuneops serve` (default: %(default)s)")
    up.add_argument("--prefect-port", type=int, default=4200, help="port of the Prefect server (default: %(default)s)")
    st = sub.add_parser("status", help="the last retrain runs and their verdicts, and the current champion")
    st.add_argument("--limit", type=int, default=10, help="how many runs (default: %(default)s)")
    pd_ = sub.add_parser(
        "prepare-data",
        help="check a prompt/completion file as OpenAI's fine_tunes.prepare_data did, and fix it (--fix)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks a prompt/completion file (JSONL, CSV, TSV or Parquet) for what OpenAI's legacy\n"
        "`openai tools fine_tunes.prepare_data` checked, and prints one row per check: check | verdict\n"
        "(ok / warning / error) | observed | fix. The checks: fewer than 100 examples; missing or miscased\n"
        "prompt/completion keys; extra fields; empty completions; duplicate pairs; examples longer than the\n"
        "model's context in its own tokens; a separator ending every prompt; completions starting with a\n"
        "whitespace; a stop sequence ending every completion (not for classification); a long common prefix;\n"
        "mostly upper-case text; the task (classification when completions take few values); a split.\n\n"
        "--fix writes <name>_prepared.jsonl (and _train/_valid halves when splitting, by default for\n"
        "classification) that passes every check; fixes of errors are always applied, recommended ones are\n"
        "asked about on a terminal (--yes accepts them all). Exit status: 0 no error check fails, 1 one\n"
        "does (on the file, or on what --fix would write), 2 the file cannot be read.",
    )
    pd_.add_argument("file", type=Path, help="the prompt/completion file (.jsonl, .csv, .tsv, .parquet)")
    pd_.add_argument("--fix", action="store_true", help="apply the fixes and write the prepared file(s)")
    pd_.add_argument("--out", type=Path, help="the prepared file (default: <name>_prepared.jsonl beside FILE)")
    pd_.add_argument("--report", type=Path, help="also write the checks as JSON here")
    pd_.add_argument(
        "--model",
        help="model or tokenizer (Hub id or local folder) to count lengths in its tokens (default: model.name in "
        "the params file; when that cannot be loaded, lengths are counted in characters, with a warning)",
    )
    pd_.add_argument(
        "--max-tokens", type=positive_int, help="longest example in tokens (default: the model's context length)"
    )
    pd_.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --fix, also write _train/_valid files (default: only for classification)",
    )
    pd_.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="accept every recommended fix without asking (the default off a terminal)",
    )
    sw = sub.add_parser(
        "sweep",
        help="a grid of params as DVC experiments on DVC's queue; --promote registers the best that passed the gate",
        description="Queues one DVC experiment per combination (`dvc exp run --queue evaluate -S ...`: DVC's grid "
        "syntax, comma-separated values, range(), choice()), runs them with `dvc queue start -j N`, waits, and "
        "shows each with its metrics and the gate's verdict. Experiments stop at evaluate, so none registers; "
        "--promote applies the best that passed the gate (`dvc exp apply`) and runs the register stage on it, "
        "which checks the gate and the champion again. Needs a git repository with a commit.",
    )
    sw.add_argument(
        "-S",
        "--set-param",
        action="append",
        required=True,
        metavar="KEY=VALUES",
        help="a params.yaml key and its values, as `dvc exp run -S` takes them (e.g. "
        "train.args.learning_rate=1.0e-4,5.0e-5); repeat for a grid",
    )
    sw.add_argument("--jobs", "-j", type=positive_int, default=1, help="experiments at once (default: %(default)s)")
    sw.add_argument("--promote", action="store_true", help="register the best experiment that passed the gate")
    return root


def champion_line(register: RegisterParams) -> str:
    from tuneops.registry.store import champion

    found = champion(register)
    if found is None:
        return f"{register.alias}: none registered for {register.model_name!r} yet"
    numbers = [
        f"test {name.replace('_', ' ')} {found.metrics[f'test_{name}']:.4f}"
        for name in ("accuracy", "macro_f1", "jaccard", "exact_match", "perplexity")
        if f"test_{name}" in found.metrics
    ]
    return (
        f"{found.alias}: {found.name} v{found.version} ({', '.join(numbers) or 'no test metrics'}, run {found.run_id})"
        f"\nOpenAI-compatible model id (tuneops serve): {found.name}@{found.alias}, or {found.name}:{found.version}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run_main(lambda: COMMANDS[args.command.replace("-", "_")](args))  # prepare-data -> cmd_prepare_data


if __name__ == "__main__":
    main()
