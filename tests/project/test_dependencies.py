"""Every dependency in pyproject.toml earns its place: the project imports it (or runs it, said why below)."""

from __future__ import annotations

import ast
import re
import tomllib

from tests.conftest import ROOT

IMPORT_NAME = {"great-expectations": "great_expectations", "scikit-learn": "sklearn", "pyyaml": "yaml"}
# Used without an import statement of ours:
USED_OTHERWISE = {
    "accelerate": "transformers' Trainer requires it and imports it itself",
    "pyarrow": "pandas' Parquet engine (data/interim, Parquet sources)",
    "dvc": "run as `python -m dvc` by the retrain flow, the demo and the tests",
    "ruff": "the linter and formatter CI runs",
    "pytest-xdist": "`pytest -n 2 --dist loadfile`, the full suite's two workers (make test-all)",
    "python-multipart": "FastAPI imports it to parse POST /v1/files' multipart upload",
}


def declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    return [re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower() for spec in specs]


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for folder in ("tuneops", "tasks", "flows", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_used():
    imported = imported_top_levels()
    unused = [d for d in declared() if d not in USED_OTHERWISE and IMPORT_NAME.get(d, d) not in imported]
    assert not unused, f"declared in pyproject.toml but never imported: {unused} (remove them, or say why here)"


def test_the_reasons_above_are_for_declared_dependencies():
    assert set(USED_OTHERWISE) <= set(declared())


def test_evaluate_is_not_a_dependency():
    """Hugging Face `evaluate` loads its metrics from the Hub (offline it fails) and would be a second definition
    of accuracy and macro-F1 beside tuneops.metrics; README "Dependencies" says so."""
    assert "evaluate" not in declared()
