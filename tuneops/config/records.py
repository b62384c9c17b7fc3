"""The records stages pass to each other (and to the flow, the CLI and people), typed once.

The writer builds one of these and the readers validate the file back into the same model, so a renamed or
missing field fails at the reader with the file's name instead of a KeyError three modules away.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue, field_validator

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
    observed: JsonValue
    threshold: JsonValue
    examples: list[str]

    @field_validator("observed", "threshold", mode="before")
    @classmethod
    def _plain(cls, value: object) -> object:
        """numpy scalars (what pandas and GX hand back) as Python numbers: JSON cannot hold them."""
        if isinstance(value, (list, tuple)):
            return [v.item() if hasattr(v, "item") else v for v in value]
        return value.item() if hasattr(value, "item") else value

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
    validation_accuracy: float  # generation: token accuracy on completions; dpo: the reward accuracy of pairs
    validation_macro_f1: float | None  # classification only


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


class BaseLabelScores(Record):
    """The base model (model.name) zero-shot on the candidate's test rows: asked through its chat template to
    answer with a label name; an answer that is no label name counts wrong."""

    model: str  # model.name (and @revision), what the gate's beats_base names
    accuracy: float
    macro_f1: float  # over the label set: "no label" only ever lowers it
    answered: float  # share of rows whose answer was a label name


class Metrics(Record):
    """reports/metrics.json (`dvc metrics show`)."""

    test: SplitScores
    train: SplitScores
    gap: Gap
    base: BaseLabelScores


class GenerationScores(Record):
    """A generation candidate on one split: teacher-forced on the completion tokens, and (test) what it
    generated for held-out prompts against the expected completions."""

    loss: float
    perplexity: float
    token_accuracy: float
    exact_match: float | None = None  # share of completions generated exactly (stripped): accuracy for labels
    jaccard: float | None = None  # word-level Jaccard of generated and expected (Kaggle's span metric)
    generated: int = 0  # prompts generated for
    # train.objective dpo (test): share of held-out pairs whose preferred reply the model finds likelier than the
    # other (summed log-probability of the reply's tokens given the prompt)
    preference_accuracy: float | None = None


class BaseGenerationScores(GenerationScores):
    """The base model (model.name) on the candidate's test split: teacher-forced on the same completions, and
    generating for the same sampled prompts with the same decoding."""

    model: str  # model.name (and @revision), what the gate's beats_base names


class BaselineScores(Record):
    """A trivial answer, scored as the candidate's completions are: the candidate must beat the best one."""

    exact_match: float
    jaccard: float


class GenerationMetrics(Record):
    """reports/metrics.json of task: generation (`dvc metrics show`)."""

    task: Literal["generation"] = "generation"
    test: GenerationScores
    train: GenerationScores
    gap: Gap  # accuracy: train - test token accuracy; loss: test - train loss
    baselines: dict[str, BaselineScores]
    base: BaseGenerationScores


class GenerationSample(Record):
    """One line of reports/samples.jsonl: a held-out prompt, its expected answer, the candidate's (`generated`)
    and the base model's (`base`), each scored against the expected one."""

    prompt: str
    expected: str
    generated: str
    finish_reason: str
    exact_match: bool
    jaccard: float
    base: str
    base_exact_match: bool
    base_jaccard: float


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


# --- tuneops prepare-data (issue 10): its JSON report -------------------------------------------------------

Verdict = Literal["ok", "warning", "error"]


class PrepCheck(Record):
    """One check of `tuneops prepare-data` on a prompt/completion file: OpenAI's prepare_data checks."""

    check: str
    verdict: Verdict
    message: str
    observed: JsonValue
    fix: str | None  # what --fix does about it (None: nothing to fix, or nothing a tool can fix)
    lines: list[int]  # where the offending rows are in the file (line of JSONL, data row otherwise), first 20


class PreparedFile(Record):
    path: str
    part: Literal["all", "train", "valid"]
    rows: int


class PrepareReport(Record):
    """The JSON report of `tuneops prepare-data` (--report): the checks on the file as given and, with --fix,
    the fixes applied, the files written and the checks on what was written."""

    file: str
    rows: int
    task: str
    length_unit: Literal["tokens", "characters"]
    max_length: int
    checks: list[PrepCheck]
    fixes_applied: list[str]
    after_fix: list[PrepCheck]
    written: list[PreparedFile]
    separator: str
    stop: str
    reminders: list[str]


# --- end of prepare-data ------------------------------------------------------------------------------------
