"""`tuneops sweep`: a 2x1 grid on DVC's queue ends with both experiments shown and exactly one new champion.

Real DVC (`dvc exp run --queue`, `dvc queue start`, `dvc exp show`, `dvc exp apply`) and real MLflow, on the
offline sample. The experiments stop at evaluate: if either registered by itself there would be more than one
version. The promoted one is the best by the gate's comparison metric, registered by the register stage.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
RATES = ("2.0e-3", "1.0e-4")  # the sample learns in one epoch at the first, barely at the second


def test_a_grid_on_the_queue_shows_every_experiment_and_registers_only_the_best(sample_project):
    project = sample_project
    project.set_params(lambda p: p["train"]["args"].update(num_train_epochs=1))
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "the sample's params")  # experiments start from a commit

    result = project.run("tuneops", "sweep", "-S", f"train.args.learning_rate={','.join(RATES)}", "--promote")

    shown = json.loads(project.dvc("exp", "show", "--json").stdout)
    experiments = {
        rev["name"]: rev["data"] for base in shown for exp in base.get("experiments") or [] for rev in exp["revs"]
    }
    assert len(experiments) == 2
    accuracy = {}
    for data in experiments.values():
        rate = data["params"]["params.yaml"]["data"]["train"]["args"]["learning_rate"]
        accuracy[rate] = data["metrics"]["reports/metrics.json"]["data"]["test"]["accuracy"]
    assert sorted(accuracy) == sorted(float(r) for r in RATES)
    assert "gate" in result.stdout and result.stdout.count("passed") >= 2  # each with the gate's verdict

    assert project.versions() == ["1"] and project.champion_version() == "1"  # one, not one per experiment
    best_rate = max(accuracy, key=accuracy.get)
    assert project.params()["train"]["args"]["learning_rate"] == best_rate  # the best was applied and registered
    record = json.loads((project.path / "models" / "registered.json").read_text())
    assert record["metrics"]["test_accuracy"] == pytest.approx(accuracy[best_rate])
    gate = json.loads((project.path / "reports" / "gate.json").read_text())
    assert gate["verdict"] == "passed"
