"""How a stage runs: its docstring is its --help."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_stage_help_explains_the_stage():
    out = subprocess.run([sys.executable, "-m", "tasks.ingest", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "Stage `ingest`" in out.stdout and "writes: data/interim" in out.stdout
