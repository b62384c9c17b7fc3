"""Shared fixtures: the real data beside the checkout, and throwaway copies of the project to run DVC in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction"
TINY_GPT2 = SHARED / "models" / "tiny-gpt2"
GPT2_TOKENIZER = SHARED / "models" / "gpt2-tokenizer"

# Offline and quiet, exactly as CI runs; the Hub is unreachable here.
os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", GX_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
    TRANSFORMERS_NO_ADVISORY_WARNINGS="1", TOKENIZERS_PARALLELISM="false",
    GIT_AUTHOR_NAME="tuneops tests", GIT_AUTHOR_EMAIL="tests@tuneops.local",
    GIT_COMMITTER_NAME="tuneops tests", GIT_COMMITTER_EMAIL="tests@tuneops.local",
)  # fmt: skip
os.environ.pop("MLFLOW_TRACKING_URI", None)


def needs_shared() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not TWEETS.is_dir(), reason=f"real data not found at {SHARED} (see shared/README.md)")


@pytest.fixture
def shared_data() -> Path:
    if not TWEETS.is_dir():
        pytest.skip(f"real data not found at {SHARED} (see shared/README.md)")
    return TWEETS


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if (root / line).is_file()]


class Project:
    """A fresh copy of this repository (git + DVC) in a temp dir, with helpers to edit params and run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, edit: Callable[[dict[str, Any]], None]) -> None:
        params = self.params()
        edit(params)
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), cwd=self.path, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def ran(self, result: subprocess.CompletedProcess) -> list[str]:
        """Stages a `dvc repro` actually ran (DVC says "Running stage 'x'")."""
        return [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")]


def use_shared_tweets(params: dict[str, Any]) -> None:
    params["data"].update(source=str(TWEETS), text_column="text", label_column="sentiment")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    dest = tmp_path / "project"
    for rel in tracked_files(ROOT):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    proj = Project(dest)
    proj.run("git", "init", "-q")
    proj.run("git", "add", "-A")
    proj.run("git", "commit", "-qm", "copy of tuneops for a test")
    return proj
