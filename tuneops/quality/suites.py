"""Data quality: label balance and text checks as Great Expectations suites, with Data Docs to read.

Each expectation carries our check name, severity and threshold in its `meta`, so a GX result becomes one
QualityRecord. Here: the GX plumbing (expectations, running suites, Data Docs) and classification's suites;
generation data's suites are built from the check registry in generation_suites.py. Also here: whether a
person must review the data before training (a pure decision).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import JsonValue

from tuneops.config.checks import CharLimitCheck, Check, ValidateParams
from tuneops.config.paths import DATA_DOCS_INDEX, SPLITS
from tuneops.config.records import QualityRecord

if TYPE_CHECKING:  # GX takes seconds to import: only where a suite runs
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.data_context.data_context.abstract_data_context import AbstractDataContext
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations import Expectation

# A suite to run: (split, suite name, the frame, its expectations).
Batch = tuple[str, str, pd.DataFrame, list["Expectation"]]
TEXT_TYPES = ["str", "string", "StringDtype", "object"]  # what GX calls pandas' string dtypes

ONLY_URLS_MENTIONS = r"^\s*(?:(?:https?://\S+|www\.\S+|@\w+|#\w+)[\s.,!?:;]*)+$"
# C0 controls but tab/newline/CR, DEL, U+FFFD, and U+FFFD's UTF-8 bytes misread as Latin-1 ("ï¿½").
MOJIBAKE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]|\u00ef\u00bf\u00bd"


def expectation(kind: str, check: str, severity: str, threshold: JsonValue, **kwargs: object) -> Expectation:
    """A GX expectation whose `meta` carries our check name, severity and threshold into the results."""
    import great_expectations.expectations as gxe

    meta = {"check": check, "severity": severity, "threshold": threshold}
    return getattr(gxe, kind)(meta=meta, **kwargs)


def rate(
    kind: str, check: str, c: Check | CharLimitCheck, threshold: JsonValue = None, **kwargs: object
) -> Expectation:
    """A per-row expectation allowed to fail on at most `c.threshold` of the rows (`threshold`: how the record
    shows it, when more than the rate)."""
    shown = c.threshold if threshold is None else threshold
    return expectation(kind, check, c.severity, shown, mostly=1 - c.threshold, **kwargs)


def min_rows(p: ValidateParams) -> Expectation:
    """Fewest rows a split may have (classification and generation alike)."""
    return row_count("min_rows", p.min_rows, "min")


def row_count(check: str, c: Check, bound: str) -> Expectation:
    """The table's row count held to c.threshold (`bound`: min | max)."""
    kwargs = {f"{bound}_value": int(c.threshold)}
    return expectation("ExpectTableRowCountToBeBetween", check, c.severity, c.threshold, **kwargs)


def row_expectations(split: str, p: ValidateParams, n_labels: int) -> list[Expectation]:
    ids = list(range(n_labels))
    exps = [
        expectation(
            "ExpectColumnValuesToBeInTypeList",
            "schema_text_is_string",
            "error",
            "str",
            column="text",
            type_list=TEXT_TYPES,
        ),
        expectation(
            "ExpectColumnValuesToBeInTypeList",
            "schema_label_is_int",
            "error",
            "int",
            column="label",
            type_list=["int64"],
        ),
        expectation(
            "ExpectColumnValuesToBeInSet", "labels_in_declared_set", "error", ids, column="label", value_set=ids
        ),
        expectation(
            "ExpectColumnDistinctValuesToContainSet", "every_label_present", "error", ids, column="label", value_set=ids
        ),
        min_rows(p),
        expectation("ExpectColumnValuesToNotBeNull", "no_null_text", "error", 0, column="text"),
        rate(
            "ExpectColumnValuesToNotMatchRegex", "empty_text_rate", p.max_empty_text_rate, column="text", regex=r"^\s*$"
        ),
        expectation(
            "ExpectColumnValueLengthsToBeBetween",
            "text_length",
            p.text_length.severity,
            [p.text_length.min, p.text_length.max],
            column="text",
            min_value=p.text_length.min,
            max_value=p.text_length.max,
        ),
        rate("ExpectColumnValuesToBeUnique", "duplicate_rate", p.max_duplicate_rate, column="text"),
        rate(
            "ExpectColumnValuesToNotMatchRegex",
            "only_urls_mentions_rate",
            p.max_only_urls_mentions_rate,
            column="text",
            regex=ONLY_URLS_MENTIONS,
        ),
        rate("ExpectColumnValuesToNotMatchRegex", "mojibake_rate", p.max_mojibake_rate, column="text", regex=MOJIBAKE),
    ]
    if split != "train":
        # `leaked_text` is the text where it also occurs in train, null elsewhere: Data Docs then lists the
        # leaked texts themselves instead of a 20,000-item value set.
        exps.append(rate("ExpectColumnValuesToBeNull", "leakage_rate", p.max_leakage_rate, column="leaked_text"))
    return exps


def column_bound(kind: str, check: str, c: Check, column: str, which: str) -> Expectation:
    """A table-level expectation: `column`'s min or max (`which` = min_value | max_value) held to c.threshold."""
    return expectation(kind, check, c.severity, c.threshold, column=column, **{which: c.threshold})


def share_expectations(split: str, p: ValidateParams) -> list[Expectation]:
    exps = [
        column_bound("ExpectColumnMinToBeBetween", "min_class_share", p.min_class_share, "share", "min_value"),
        column_bound(
            "ExpectColumnMaxToBeBetween", "max_class_ratio", p.max_class_ratio, "ratio_to_smallest", "max_value"
        ),
    ]
    if split != "train":
        drift = p.max_class_share_drift
        exps.append(
            column_bound("ExpectColumnMaxToBeBetween", "class_share_drift", drift, "drift_from_train", "max_value")
        )
    return exps


def label_shares(df: pd.DataFrame, train: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per declared label: its share, its ratio to the rarest class, its drift from train."""

    def shares(frame: pd.DataFrame) -> pd.Series:
        counts = frame["label"].value_counts().reindex(range(len(labels)), fill_value=0)
        return counts / max(len(frame), 1)

    share, train_share = shares(df), shares(train)
    smallest = share.min()
    return pd.DataFrame(
        {
            "label_text": labels,
            "share": share.to_numpy(),
            "ratio_to_smallest": (share / smallest).to_numpy() if smallest > 0 else float("inf"),
            "drift_from_train": (share - train_share).abs().to_numpy(),
        }
    )


def _observed(result: dict[str, Any]) -> JsonValue:
    if "partial_missing_list" in result:  # a set-containment check: the labels that are absent
        return {"missing": result.get("partial_missing_list", [])}
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_percent" in result:  # a rate check: the share of offending rows
        return round((result.get("unexpected_percent_total", result["unexpected_percent"]) or 0) / 100, 6)
    return None


def _records(split: str, suite: str, run_result: ExpectationSuiteValidationResult) -> list[QualityRecord]:
    return [
        QualityRecord(
            check=r.expectation_config.meta["check"],
            suite=suite,
            split=split,
            severity=r.expectation_config.meta["severity"],
            passed=bool(r.success),
            observed=_observed(r.result),
            threshold=r.expectation_config.meta["threshold"],
            examples=[str(v) for v in r.result.get("partial_unexpected_list", [])[:3]],
        )
        for r in run_result.results
    ]


def gx_context(docs_dir: Path) -> tuple[AbstractDataContext, PandasDatasource]:
    """An ephemeral GX context whose Data Docs go to `docs_dir`, and its pandas data source."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # One progress bar per metric batch floods the DVC and Prefect logs; the stage logs its own table.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.add_data_docs_site(
        site_name="local",
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        },
    )
    return context, context.data_sources.add_pandas("tuneops")


def run_suites(docs_dir: Path, batches: list[Batch]) -> list[QualityRecord]:
    """Each (split, suite name, frame, expectations) validated by GX; Data Docs built into `docs_dir`."""
    import great_expectations as gx

    context, source = gx_context(docs_dir)
    records: list[QualityRecord] = []
    for split, name, frame, expectations in batches:
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        records += _records(split, name, vd.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY"))
    context.build_data_docs(site_names=["local"])
    return records


def run_checks(
    frames: dict[str, pd.DataFrame], p: ValidateParams, labels: list[str], docs_dir: Path
) -> list[QualityRecord]:
    """Run every suite through GX and build Data Docs into `docs_dir`; return one record per check."""
    train_texts = set(frames["train"]["text"].dropna())
    batches: list[Batch] = []
    for split in SPLITS:
        df = frames[split].copy()
        df["leaked_text"] = df["text"].where(df["text"].isin(train_texts)) if split != "train" else None
        batches += [
            (split, split, df, row_expectations(split, p, len(labels))),
            (split, f"{split}_label_shares", label_shares(df, frames["train"], labels), share_expectations(split, p)),
        ]
    return run_suites(docs_dir, batches)


def add_plain_index(docs_dir: Path, records: list[QualityRecord]) -> None:
    """Put plain links to every validation page at the top of index.html, with what failed.

    GX builds its index table with JavaScript from a CDN, so without internet the page lists nothing.
    """
    items = []
    for page in sorted((docs_dir / "validations").rglob("*.html")):
        name = page.relative_to(docs_dir / "validations").parts[0]
        checks = [r for r in records if r.suite == name]
        failed = ", ".join(f"{r.check} ({r.severity})" for r in checks if not r.passed) or "none"
        link = html.escape(page.relative_to(docs_dir).as_posix())
        count = f"{len(checks)} checks, failed: {html.escape(failed)}"
        items.append(f'<li><a href="{link}">{html.escape(name)}</a>: {count}</li>')
    title = "<h3>tuneops data quality: validation results</h3>"
    listing = "".join(items)
    block = f'<div style="margin:1em;font-family:sans-serif">{title}<ul>{listing}</ul></div>'
    index = docs_dir / DATA_DOCS_INDEX.name
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + block, index.read_text(encoding="utf-8"), count=1)
    index.write_text(page, encoding="utf-8")


def table(records: list[QualityRecord]) -> str:
    """The checks as a plain-text table for the stage's log."""
    lines = [f"{'check':<26}{'split':<12}{'severity':<10}{'result':<8}{'observed':>12}  threshold"]
    for r in records:
        observed = f"{r.observed:.4g}" if isinstance(r.observed, float) else str(r.observed)
        lines.append(f"{r.check:<26}{r.split:<12}{r.severity:<10}{r.result:<8}{observed:>12}  {r.threshold}")
    return "\n".join(lines)


def review_needed(policy: str, records: list[QualityRecord], manifest_sha: str, approved_sha: str | None) -> bool:
    """Must a person review this data before training? Never under `never`, nor for data already approved
    (`approved_sha` is the manifest a person last approved); under `always` yes, else only when a check failed."""
    if policy == "never" or manifest_sha == approved_sha:
        return False
    return policy == "always" or any(not r.passed for r in records)
