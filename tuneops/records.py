"""The records stages pass to each other (and to the flow, the CLI and people), typed once.

The writer builds one of these and the readers validate the file back into the same model, so a renamed or
missing field fails at the reader with the file's name instead of a KeyError three modules away.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["error", "warning"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitManifest(Record):
    rows: int
    label_counts: dict[str, int]
    sha256: str


class Manifest(Record):
    """data/interim/manifest.json: what ingest read and wrote."""

    source: str
    revision: str | None
    labels: list[str]
    splits: dict[str, SplitManifest]


class QualityRecord(Record):
    """One data-quality check on one split (reports/data_quality.json holds a list of these)."""

    check: str
    suite: str
    split: str
    severity: Severity
    passed: bool
    observed: Any
    threshold: Any
    examples: list[str]

    @property
    def result(self) -> str:
        return "ok" if self.passed else ("FAIL" if self.severity == "error" else "warn")

    def line(self) -> str:
        return f"{self.check} on {self.split}: observed {self.observed}, threshold {self.threshold}"


class DataVerdict(Record):
    """reports/data_quality_verdict.json: written only when no error check failed; tokenize requires it."""

    passed: bool
    manifest_sha256: str


class DataReview(Record):
    """reports/data_review.json: a person's answer to the flow's review pause."""

    approved_manifest: str | None
    approve: bool
    comment: str
    at: float


class LengthStats(Record):
    rows: int
    mean: float
    p50: float
    p95: float
    max: int
    truncation_rate: float


class TokenizationReport(Record):
    max_length: int
    splits: dict[str, LengthStats]


class EpochRow(Record):
    """One row of reports/train_history.json (what `dvc plots show` draws)."""

    epoch: float
    train_loss: float | None
    validation_loss: float
    validation_accuracy: float
    validation_macro_f1: float


class ClassScores(Record):
    precision: float
    recall: float
    f1: float
    support: int


class SplitScores(Record):
    accuracy: float
    macro_f1: float
    loss: float
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]


class Gap(Record):
    accuracy: float  # train accuracy - test accuracy
    loss: float  # test loss - train loss


class Metrics(Record):
    """reports/metrics.json (`dvc metrics show`)."""

    test: SplitScores
    train: SplitScores
    gap: Gap


class GateCheck(Record):
    check: str
    observed: float | None
    threshold: float | None
    passed: bool
    detail: str = ""


class GateVerdict(Record):
    """reports/gate.json: every check with its observed value and threshold, and the verdict."""

    verdict: Literal["passed", "failed"]
    checks: list[GateCheck]

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


class Registration(Record):
    """models/registered.json: the version `register` made and the alias it moved."""

    name: str
    version: str
    alias: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]


class Champion(Record):
    """The registered version an alias points at, with its run's metrics (`test_accuracy`, ...)."""

    name: str
    version: str
    alias: str
    run_id: str
    metrics: dict[str, float]


class RunSummary(Record):
    """What one retrain flow run did: its final state's data (`tuneops run`, the tests and the UI read it)."""

    ran: list[str] = []
    skipped: list[str] = []
    verdict: Literal["passed", "failed"] | None = None
    registered: Registration | None = None
