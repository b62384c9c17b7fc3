"""How a stage or a command runs: quiet logging, its docstring as --help, failures as one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from tuneops.config.errors import EXIT_TRANSIENT, EXIT_USER_ERROR, TransientError, UserError
from tuneops.config.paths import PARAMS_PATH

# Local sources work offline, and no run should phone home.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # the temporary server would phone home
# MLflow retries a dead tracking server 7 times with doubling waits (minutes); the stage says so in seconds.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
# user:password@ in a URL (MLFLOW_TRACKING_URI, a DVC remote) must never reach a log or an error line
CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]+):[^@\s/]+@")


def redact(text: str) -> str:
    return CREDENTIALS.sub(r"\1:***@", text)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Libraries that narrate their internals at INFO drown the stage's own story.
    for noisy in ("great_expectations", "httpx", "urllib3", "filelock", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(main: Callable[[], object]) -> None:
    """Run an entry point: a user error becomes one line on stderr and exit 2, a transient one exit 75."""
    setup_logging()
    try:
        main()
    except UserError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except TransientError as exc:
        print(f"error: {redact(str(exc))} (transient: retry later)", file=sys.stderr)
        raise SystemExit(EXIT_TRANSIENT) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line every stage shares: its docstring as --help, and --params."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=PARAMS_PATH, help="params file (default: %(default)s)")
    return parser
