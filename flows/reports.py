"""Prefect artifacts from the stages' own reports: data quality, metrics, gate verdict, registration.

Each report is read back into the record its stage wrote (tuneops.records), never by string keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tuneops.config.paths import (
    DATA_DOCS_INDEX,
    DATA_QUALITY_PATH,
    GATE_PATH,
    METRICS_PATH,
    REGISTERED_PATH,
    REVIEW_PAGE_PATH,
    SAMPLES_PATH,
)
from tuneops.config.records import (
    GateVerdict,
    GenerationMetrics,
    GenerationSample,
    Metrics,
    QualityRecord,
    Registration,
)
from tuneops.io.files import read_json

SAMPLES_SHOWN = 50  # rows of the samples table in the Prefect UI

Record = TypeVar("Record")


def _read(path: Path, kind: type[Record] | Any) -> Record | None:
    return read_json(path, kind) if path.is_file() else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def data_quality() -> list[QualityRecord] | None:
    records = _read(DATA_QUALITY_PATH, list[QualityRecord])
    if records is None:
        return None
    page, docs = REVIEW_PAGE_PATH.resolve(), DATA_DOCS_INDEX.resolve()
    rows = [
        {
            "check": r.check,
            "split": r.split,
            "severity": r.severity,
            "result": "passed" if r.passed else "FAILED",
            "observed": _fmt(r.observed),
            "threshold": _fmt(r.threshold),
        }
        for r in records
    ]
    create_table_artifact(rows, key="data-quality", description=f"Review page: file://{page}; Data Docs: file://{docs}")
    failed = [r for r in rows if r["result"] == "FAILED"]
    summary = "\n".join(
        f"| {r['check']} | {r['split']} | {r['severity']} | {r['observed']} | {r['threshold']} |" for r in failed
    )
    create_markdown_artifact(
        f"# Data quality\n\n{len(rows) - len(failed)} of {len(rows)} checks passed. "
        f"Review page (self-contained, works offline): `{page}`; Great Expectations Data Docs: `{docs}`\n\n"
        f"| failed check | split | severity | observed | threshold |\n|---|---|---|---|---|\n"
        f"{summary or '| (none) | | | | |'}\n",
        key="data-quality-summary",
    )
    return records


def metrics() -> None:
    m = _read(METRICS_PATH, GenerationMetrics | Metrics)  # each forbids the other's fields: the file decides
    if m is None:
        return
    if isinstance(m, GenerationMetrics):
        generation_metrics(m)
        return
    rows = [
        {"split": name, "accuracy": _fmt(s.accuracy), "macro_f1": _fmt(s.macro_f1), "loss": _fmt(s.loss)}
        for name, s in (("test", m.test), ("train", m.train))
    ]
    gap = {"accuracy": _fmt(m.gap.accuracy), "macro_f1": "", "loss": _fmt(m.gap.loss)}
    rows.append({"split": "gap (train-test acc, test-train loss)", **gap})
    base = {"accuracy": _fmt(m.base.accuracy), "macro_f1": _fmt(m.base.macro_f1), "loss": ""}
    rows.append({"split": f"base: {m.base.model}, zero-shot on test", **base})
    create_table_artifact(rows, key="metrics", description=f"Candidate metrics ({METRICS_PATH})")


def generation_metrics(m: GenerationMetrics) -> None:
    """Loss, perplexity, token accuracy and the generated completions' scores, the baselines below them; and
    a table of held-out prompts with the expected and the generated completion."""
    rows = [
        {
            "split": name,
            "loss": _fmt(s.loss),
            "perplexity": _fmt(s.perplexity),
            "token_accuracy": _fmt(s.token_accuracy),
            "exact_match": _fmt(s.exact_match) if s.exact_match is not None else "",
            "jaccard": _fmt(s.jaccard) if s.jaccard is not None else "",
        }
        for name, s in (("test", m.test), ("train", m.train), (f"base: {m.base.model}, on test", m.base))
    ]
    for name, b in m.baselines.items():
        empty = {"loss": "", "perplexity": "", "token_accuracy": ""}
        rows.append(
            {"split": f"baseline: {name}", **empty, "exact_match": _fmt(b.exact_match), "jaccard": _fmt(b.jaccard)}
        )
    create_table_artifact(rows, key="metrics", description=f"Candidate metrics ({METRICS_PATH})")
    if SAMPLES_PATH.is_file():
        shown = [GenerationSample.model_validate_json(line) for line in SAMPLES_PATH.read_text().splitlines()]
        create_table_artifact(
            [s.model_dump() for s in shown[:SAMPLES_SHOWN]],
            key="samples",
            description=f"Held-out prompts: expected, generated and the base model's completions ({SAMPLES_PATH})",
        )


def gate() -> GateVerdict | None:
    g = _read(GATE_PATH, GateVerdict)
    if g is None:
        return None
    lines = "\n".join(
        f"| {c.check} | {'passed' if c.passed else 'FAILED'} | {_fmt(c.observed)} | {_fmt(c.threshold)} | {c.detail} |"
        for c in g.checks
    )
    create_markdown_artifact(
        f"# Gate: {g.verdict}\n\n| check | result | observed | threshold | note |\n|---|---|---|---|---|\n{lines}\n",
        key="gate",
    )
    return g


def registration() -> Registration | None:
    r = _read(REGISTERED_PATH, Registration)
    if r is not None:
        create_markdown_artifact(
            f"# Registered\n\n`{r.name}` version **{r.version}**, alias `{r.alias}` "
            f"(MLflow run `{r.run_id}`). Serve it with `tuneops serve`.",
            key="registered-model",
        )
    return r
