"""What every stage shares: the user-error convention, logging, and writes that are never half-done."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("tuneops")

# The Hub is optional (local sources work offline), and no run should phone home.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


EXIT_USER_ERROR = 2
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the retrain flow retries only this exit code


class UserError(Exception):
    """A mistake in the user's data, params or environment: reported as one line, no traceback."""


class TransientError(Exception):
    """A failure worth retrying (the Hub or a network file system), unlike a mistake in the data."""


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Libraries that narrate their internals at INFO drown the stage's own story.
    for noisy in ("great_expectations", "httpx", "urllib3", "filelock", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(stage: Callable[[], Any]) -> None:
    """Run a stage's entry point: a user error becomes one line on stderr and exit code 2."""
    setup_logging()
    try:
        stage()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except TransientError as exc:
        print(f"error: {exc} (transient: retry later)", file=sys.stderr)
        raise SystemExit(EXIT_TRANSIENT) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line every stage shares: its docstring as --help, and --params."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    return parser


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: not found (run the stage that writes it first, e.g. `dvc repro`)")
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def staged_dir(final_dir: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `final_dir` only if the block succeeds.

    A stage that fails leaves no output a later stage could take for valid.
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}."))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(staging, final_dir)


def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
