"""MLflow's registry as serving reads it, its decisions without MLflow: which aliases keep a version from deletion."""

from __future__ import annotations

from tuneops.registry.mlflow_registry import blocking_aliases

JOB = "ftjob-0123456789abcdef0123456789abcdef"


def test_only_the_jobs_own_alias_goes_with_a_deleted_version():
    tags = {"tuneops.fine_tuning_job": JOB}
    assert blocking_aliases([JOB], tags) == []
    assert blocking_aliases([JOB, "champion", "canary"], tags) == ["canary", "champion"]
    assert blocking_aliases(["champion"], {}) == ["champion"]
