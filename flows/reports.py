"""Prefect artifacts from the stages' own reports: data quality, metrics, gate verdict, registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

REPORTS = Path("reports")


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def data_quality() -> list[dict] | None:
    records = _read(REPORTS / "data_quality.json")
    if records is None:
        return None
    docs = (REPORTS / "data_quality" / "index.html").resolve()
    rows = [{"check": r["check"], "split": r["split"], "severity": r["severity"],
             "result": "passed" if r["passed"] else "FAILED", "observed": _fmt(r["observed"]),
             "threshold": _fmt(r["threshold"])} for r in records]  # fmt: skip
    failed = [r for r in rows if r["result"] == "FAILED"]
    create_table_artifact(rows, key="data-quality", description=f"Data Docs: file://{docs}")
    summary = "\n".join(f"| {r['check']} | {r['split']} | {r['severity']} | {r['observed']} | {r['threshold']} |"
                        for r in failed) or "| (none) | | | | |"  # fmt: skip
    create_markdown_artifact(
        f"# Data quality\n\n{len(rows) - len(failed)} of {len(rows)} checks passed. "
        f"Full report (Great Expectations Data Docs): `{docs}`\n\n"
        f"| failed check | split | severity | observed | threshold |\n|---|---|---|---|---|\n{summary}\n",
        key="data-quality-summary",
    )
    return records


def metrics() -> None:
    m = _read(REPORTS / "metrics.json")
    if m is None:
        return
    rows = [{"split": split, "accuracy": _fmt(m[split]["accuracy"]), "macro_f1": _fmt(m[split]["macro_f1"]),
             "loss": _fmt(m[split]["loss"])} for split in ("test", "train")]  # fmt: skip
    rows.append({"split": "gap (train-test acc, test-train loss)", "accuracy": _fmt(m["gap"]["accuracy"]),
                 "macro_f1": "", "loss": _fmt(m["gap"]["loss"])})  # fmt: skip
    create_table_artifact(rows, key="metrics", description="Candidate metrics (reports/metrics.json)")


def gate() -> dict | None:
    g = _read(REPORTS / "gate.json")
    if g is None:
        return None
    lines = "\n".join(f"| {c['check']} | {'passed' if c['passed'] else 'FAILED'} | {_fmt(c['observed'])} | "
                      f"{_fmt(c['threshold'])} | {c.get('detail', '')} |" for c in g["checks"])  # fmt: skip
    create_markdown_artifact(
        f"# Gate: {g['verdict']}\n\n| check | result | observed | threshold | note |\n|---|---|---|---|---|\n{lines}\n",
        key="gate",
    )
    return g


def registration() -> dict | None:
    r = _read(Path("models") / "registered.json")
    if r is not None:
        create_markdown_artifact(
            f"# Registered\n\n`{r['name']}` version **{r['version']}**, alias `{r['alias']}` "
            f"(MLflow run `{r['run_id']}`). Serve it with `tuneops serve`.",
            key="registered-model",
        )
    return r
