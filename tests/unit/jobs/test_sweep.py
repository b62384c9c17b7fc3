"""The sweep's own decisions, apart from DVC: which keys it accepts, which registry experiments use, how it reads
the queue, and which experiment it promotes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.records import GateCheck, GateVerdict
from tuneops.jobs.sweep import Experiment, absolute_tracking_uri, best, check_overrides, gate_score, queue_states, table

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_overrides_name_keys_params_yaml_has():
    sets = ["train.args.learning_rate=1.0e-4,5.0e-5", "train.args.num_train_epochs=range(1,3)"]
    assert check_overrides(sets, RAW) == ["train.args.learning_rate", "train.args.num_train_epochs"]
    with pytest.raises(UserError, match="params.yaml has no train.args.learning_rat"):
        check_overrides(["train.args.learning_rat=1.0e-4"], RAW)
    with pytest.raises(UserError, match="expected key=value"):
        check_overrides(["train.args.learning_rate"], RAW)


def test_experiments_log_to_this_projects_registry_not_their_copys():
    root = Path("/work/project")
    assert absolute_tracking_uri("sqlite:///mlflow.db", root) == "sqlite:////work/project/mlflow.db"
    assert absolute_tracking_uri("sqlite:////srv/mlflow.db", root) == "sqlite:////srv/mlflow.db"
    assert absolute_tracking_uri("http://mlflow:5000", root) == "http://mlflow:5000"


def test_queue_status_gives_each_experiments_state_and_the_workers():
    status = """Task     Name        Created    Status
0a68737  enate-drum  01:12 PM   Success
0cb2f36  beady-code  01:12 PM   Running
1f2e3d4  lofty-pine  Nov 24, 2026  Failed

Worker status: 1 active, 0 idle
"""
    states, workers = queue_states(status)
    assert states == {"enate-drum": "Success", "beady-code": "Running", "lofty-pine": "Failed"}
    assert workers == 1
    assert queue_states("Task  Name  Created  Status\n\nWorker status: 0 active, 0 idle\n") == ({}, 0)


def verdict(passed: bool, score: float) -> GateVerdict:
    checks = [
        GateCheck(check="min_accuracy", observed=score, threshold=0.45, passed=passed),
        GateCheck(check="beats_champion", observed=score, threshold=None, passed=True),
    ]
    return GateVerdict(verdict="passed" if passed else "failed", checks=checks)


def experiment(name: str, gate: GateVerdict | None, state: str = "Success") -> Experiment:
    return Experiment(
        name=name,
        state=state,
        rev="abc" if gate else None,
        params={"train.args.learning_rate": 1e-4},
        verdict=gate.verdict if gate else None,
        score=gate_score(gate) if gate else None,
        failed_checks=[c.check for c in gate.failed] if gate else [],
    )


def test_the_best_that_passed_the_gate_is_promoted_never_one_that_failed_it():
    high_but_failed = experiment("a", verdict(False, 0.9))
    passed = [experiment("b", verdict(True, 0.7)), experiment("c", verdict(True, 0.8))]
    crashed = experiment("d", None, state="Failed")
    assert best([high_but_failed, *passed, crashed]).name == "c"
    assert best([high_but_failed, crashed]) is None
    assert best([experiment("y", verdict(True, 0.8)), experiment("x", verdict(True, 0.8))]).name == "x"  # ties


def test_the_table_marks_the_chosen_one_and_says_what_failed():
    rows = [experiment("a", verdict(False, 0.3)), experiment("b", verdict(True, 0.8))]
    text = table(rows, ["train.args.learning_rate"], rows[1]).splitlines()
    assert text[0].split() == ["experiment", "train.args.learning_rate", "state", "gate", "score", "failed", "checks"]
    assert text[1].split() == ["a", "0.0001", "Success", "failed", "0.3000", "min_accuracy"]
    assert text[2].split() == ["b", "*", "0.0001", "Success", "passed", "0.8000"]
