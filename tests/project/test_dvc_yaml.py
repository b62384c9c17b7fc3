"""dvc.yaml is honest: each stage's deps cover the project code it runs, and its paths are tuneops.paths'.

DVC reruns a stage only when a dep changes. A module the stage imports but does not list is a change DVC
cannot see: `dvc repro` would reuse a model built with the old code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuneops.config import paths
from tuneops.config.paths import DVC_YAML_PATH

PROJECT_PACKAGES = ("tuneops", "tasks", "flows")
STAGES = yaml.safe_load((ROOT / DVC_YAML_PATH).read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), or None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (both run when the stage runs)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def closure(module: str) -> set[Path]:
    """The project files that run when `python -m module` runs: itself, its imports, their packages' inits."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(imported_modules(path))
    return seen


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(dep) or Path(dep) in rel.parents for dep in deps)


def stage_module(stage: dict) -> str:
    cmd = stage["cmd"].split()
    assert cmd[:2] == ["python", "-m"], f"stage command {stage['cmd']!r} is not `python -m tasks.<stage>`"
    return cmd[2]


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_runs_is_one_of_its_deps(name):
    stage = STAGES[name]
    runs = closure(stage_module(stage))
    missing = [p.relative_to(ROOT).as_posix() for p in runs if not covered(p, stage["deps"])]
    assert not missing, f"stage {name}: imports {', '.join(sorted(missing))}, not in its dvc.yaml deps"
    code_deps = {d for d in stage["deps"] if d.endswith(".py")}
    extra = code_deps - {p.relative_to(ROOT).as_posix() for p in runs}
    assert not extra, f"stage {name}: lists {sorted(extra)} in its deps but never imports them (needless reruns)"


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_name_module_and_function_agree(name):
    assert stage_module(STAGES[name]) == f"tasks.{name}"
    source = (ROOT / "tasks" / f"{name}.py").read_text()
    assert f"\ndef {name}(" in source


def test_no_stage_imports_another_stage():
    for name in STAGES:
        stage_files = {p.relative_to(ROOT).as_posix() for p in closure(f"tasks.{name}")}
        others = sorted(
            f for f in stage_files if f.startswith("tasks/") and f not in (f"tasks/{name}.py", "tasks/__init__.py")
        )
        assert not others, f"stage {name} imports {others}"


def test_a_metric_change_reruns_train_and_evaluate_and_the_cli_reruns_nothing():
    runs = {name: {p.relative_to(ROOT).as_posix() for p in closure(f"tasks.{name}")} for name in STAGES}
    assert {n for n, files in runs.items() if "tuneops/evaluation/metrics.py" in files} == {"train", "evaluate"}
    for front_end in (
        "tuneops/cli/main.py",
        "tuneops/serve/app.py",
        "tuneops/inference/predict.py",
        "flows/retrain.py",
    ):
        assert not [n for n, files in runs.items() if front_end in files], front_end


def declared_paths(stage: dict) -> set[str]:
    entries = [*stage.get("deps", []), *stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_dvc_yaml_paths_are_the_ones_tuneops_paths_names():
    named = {value.as_posix() for value in vars(paths).values() if isinstance(value, Path)}
    for name, stage in STAGES.items():
        data_paths = {p for p in declared_paths(stage) if not p.endswith(".py")}
        assert data_paths <= named, f"stage {name}: {sorted(data_paths - named)} are not in tuneops/config/paths.py"


def docstring_section(doc: str, label: str) -> str:
    """The text after `label:` up to the next `params:`/`reads:`/`writes:` or blank line, notes in () removed."""
    match = re.search(rf"^{label}:(.*?)(?=^\w+:|^\s*$)", doc + "\n\n", flags=re.M | re.S)
    assert match, f"no `{label}:` line"
    text = match.group(1)
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", "", text)
    return text


@pytest.mark.parametrize("name", list(STAGES))
def test_a_stage_docstring_states_exactly_its_params_and_paths(name):
    """`python -m tasks.<stage> --help` shows the docstring: it says exactly what dvc.yaml gives the stage."""
    stage = STAGES[name]
    doc = ast.get_docstring(ast.parse((ROOT / "tasks" / f"{name}.py").read_text())) or ""
    params = {key.strip() for key in docstring_section(doc, "params").split(",")}
    assert params == set(stage.get("params", [])), f"tasks/{name}.py: params in the docstring vs dvc.yaml"
    named = {value.as_posix() for value in vars(paths).values() if isinstance(value, Path)}
    said = docstring_section(doc, "reads") + docstring_section(doc, "writes")
    mentioned = {token for token in re.findall(r"[\w./]+", said) if token in named}
    data_paths = {p for p in declared_paths(stage) if not p.endswith(".py")} - {"data/raw"}  # ingest: data.source
    assert mentioned == data_paths, f"tasks/{name}.py: paths in the docstring vs dvc.yaml"
