"""Data quality: label balance and text checks as Great Expectations suites, with Data Docs to read.

Each expectation carries our check name, severity and threshold in its `meta`, so a GX result becomes one
QualityRecord. Also here: whether a person must review the data before training (a pure decision).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tuneops.config.params import Check, GenerationChecks, ValidateParams
from tuneops.config.paths import DATA_DOCS_INDEX, SPLITS
from tuneops.config.records import QualityRecord
from tuneops.data.splits import text_key
from tuneops.quality import measures as pc

ONLY_URLS_MENTIONS = r"^\s*(?:(?:https?://\S+|www\.\S+|@\w+|#\w+)[\s.,!?:;]*)+$"
# C0 controls but tab/newline/CR, DEL, U+FFFD, and U+FFFD's UTF-8 bytes misread as Latin-1 ("ï¿½").
MOJIBAKE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]|\u00ef\u00bf\u00bd"


def _exp(kind: str, check: str, severity: str, threshold: Any, **kwargs: Any) -> Any:
    """A GX expectation whose `meta` carries our check name, severity and threshold into the results."""
    import great_expectations.expectations as gxe

    meta = {"check": check, "severity": severity, "threshold": threshold}
    return getattr(gxe, kind)(meta=meta, **kwargs)


def _rate(kind: str, check: str, c: Check, **kwargs: Any) -> Any:
    """A per-row expectation allowed to fail on at most `c.threshold` of the rows."""
    return _exp(kind, check, c.severity, c.threshold, mostly=1 - c.threshold, **kwargs)


def min_rows(p: ValidateParams) -> Any:
    """Fewest rows a split may have (classification and generation alike)."""
    threshold = p.min_rows.threshold
    return _exp("ExpectTableRowCountToBeBetween", "min_rows", p.min_rows.severity, threshold, min_value=int(threshold))


def row_expectations(split: str, p: ValidateParams, n_labels: int) -> list[Any]:
    ids = list(range(n_labels))
    text_types = ["str", "string", "StringDtype", "object"]  # what GX calls pandas' string dtypes
    exps = [
        _exp(
            "ExpectColumnValuesToBeInTypeList",
            "schema_text_is_string",
            "error",
            "str",
            column="text",
            type_list=text_types,
        ),
        _exp(
            "ExpectColumnValuesToBeInTypeList",
            "schema_label_is_int",
            "error",
            "int",
            column="label",
            type_list=["int64"],
        ),
        _exp("ExpectColumnValuesToBeInSet", "labels_in_declared_set", "error", ids, column="label", value_set=ids),
        _exp(
            "ExpectColumnDistinctValuesToContainSet", "every_label_present", "error", ids, column="label", value_set=ids
        ),
        min_rows(p),
        _exp("ExpectColumnValuesToNotBeNull", "no_null_text", "error", 0, column="text"),
        _rate(
            "ExpectColumnValuesToNotMatchRegex", "empty_text_rate", p.max_empty_text_rate, column="text", regex=r"^\s*$"
        ),
        _exp(
            "ExpectColumnValueLengthsToBeBetween",
            "text_length",
            p.text_length.severity,
            [p.text_length.min, p.text_length.max],
            column="text",
            min_value=p.text_length.min,
            max_value=p.text_length.max,
        ),
        _rate("ExpectColumnValuesToBeUnique", "duplicate_rate", p.max_duplicate_rate, column="text"),
        _rate(
            "ExpectColumnValuesToNotMatchRegex",
            "only_urls_mentions_rate",
            p.max_only_urls_mentions_rate,
            column="text",
            regex=ONLY_URLS_MENTIONS,
        ),
        _rate("ExpectColumnValuesToNotMatchRegex", "mojibake_rate", p.max_mojibake_rate, column="text", regex=MOJIBAKE),
    ]
    if split != "train":
        # `leaked_text` is the text where it also occurs in train, null elsewhere: Data Docs then lists the
        # leaked texts themselves instead of a 20,000-item value set.
        exps.append(_rate("ExpectColumnValuesToBeNull", "leakage_rate", p.max_leakage_rate, column="leaked_text"))
    return exps


def _bound(kind: str, check: str, c: Check, column: str, bound: str) -> Any:
    """A table-level expectation: `column`'s min or max (`bound` = min_value | max_value) held to c.threshold."""
    return _exp(kind, check, c.severity, c.threshold, column=column, **{bound: c.threshold})


def share_expectations(split: str, p: ValidateParams) -> list[Any]:
    exps = [
        _bound("ExpectColumnMinToBeBetween", "min_class_share", p.min_class_share, "share", "min_value"),
        _bound("ExpectColumnMaxToBeBetween", "max_class_ratio", p.max_class_ratio, "ratio_to_smallest", "max_value"),
    ]
    if split != "train":
        drift = p.max_class_share_drift
        exps.append(_bound("ExpectColumnMaxToBeBetween", "class_share_drift", drift, "drift_from_train", "max_value"))
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


def _observed(result: dict[str, Any]) -> Any:
    if "partial_missing_list" in result:  # a set-containment check: the labels that are absent
        return {"missing": result.get("partial_missing_list", [])}
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_percent" in result:  # a rate check: the share of offending rows
        return round((result.get("unexpected_percent_total", result["unexpected_percent"]) or 0) / 100, 6)
    return None


def _records(split: str, suite: str, run_result: Any) -> list[QualityRecord]:
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


def gx_context(docs_dir: Path) -> tuple[Any, Any]:
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


def run_suites(docs_dir: Path, batches: list[tuple[str, str, pd.DataFrame, list[Any]]]) -> list[QualityRecord]:
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
    batches = []
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


# --- generation data (task: generation): OpenAI's prepare_data checks as GX expectations ----------------------
# Each check's measure is defined once, in tuneops/quality/measures.py (`tuneops prepare-data` uses the same). A
# per-row check becomes a column holding the offending row's text and null elsewhere, expected null on at least
# 1 - threshold of the rows: Data Docs and the review page then show the offending texts themselves. Lengths are
# counted in characters here (validate reads no model; see validate.generation.long_example in params.yaml).

EXAMPLE_TAIL = 200  # a separator is at a prompt's end: show its end


def tail(text: str) -> str:
    return text if len(text) <= EXAMPLE_TAIL else "…" + text[-EXAMPLE_TAIL:]


def offenders(texts: pd.Series, mask: pd.Series) -> pd.Series:
    """`texts` where `mask` holds, None elsewhere (what ExpectColumnValuesToBeNull counts)."""
    return texts.astype(object).where(mask.to_numpy(), None)


def pair_endings(train: pd.DataFrame, stop: Sequence[str]) -> tuple[pc.Task, str, list[str]]:
    """What every split is held to, learnt from train: the task, the separator (pair_checks.separator), and
    the stop sequences (generation.stop, else the ending common to train completions)."""
    prompts, completions = pc.as_text(train["prompt"]), pc.as_text(train["completion"])
    task = pc.infer_task(prompts, completions)
    separator = pc.separator(prompts) if task != "open-ended generation" else ""
    stops = list(stop) or [s for s in [pc.common_suffix(completions)] if s]
    return task, separator, stops


def pair_columns(
    df: pd.DataFrame,
    train_prompts: set[str] | None,
    task: pc.Task,
    separator: str,
    stops: list[str],
    g: GenerationChecks,
) -> pd.DataFrame:
    """The split with one column per row check: the offending text, or None."""
    prompt, completion = pc.as_text(df["prompt"]), pc.as_text(df["completion"])
    pairs = prompt.map(tail) + " ⟶ " + completion
    none = pd.Series(False, index=df.index)
    generating = task != "classification"
    prompted = task != "open-ended generation"
    lengths = pc.char_lengths(prompt, completion)
    columns = {
        "empty_completion": offenders(pairs, pc.empty_completions(completion)),
        "duplicate_pair": offenders(pairs, pc.duplicate_pairs(prompt, completion)),
        "long_example": offenders(pairs, pc.too_long(lengths, g.long_example.max_chars)),
        "missing_separator": offenders(prompt.map(tail), pc.lacks_ending(prompt, separator) if prompted else none),
        "separator_inside": offenders(prompt.map(tail), pc.ending_inside(prompt, [separator]) if prompted else none),
        "no_leading_space": offenders(completion, pc.no_leading_space(completion)),
        "missing_stop": offenders(completion, pc.lacks_any_ending(completion, stops) if generating else none),
        "stop_inside": offenders(completion, pc.ending_inside(completion, stops) if generating else none),
    }
    if train_prompts is not None:
        columns["leaked_prompt"] = offenders(prompt, text_key(prompt).isin(train_prompts))
    return df.assign(**columns, **{c: as_string_dtype(df[c]) for c in ("prompt", "completion")})


def as_string_dtype(values: pd.Series) -> pd.Series:
    """pandas' string dtype where every value is a str (or missing): GX's type check fails object columns of
    str. Values of other types stay as they are, for that check to name."""
    return values.astype("string") if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty") else values


def pair_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row of whole-split measures: common prefixes, upper-case shares, distinct prompts (floats: GX
    hands back a column's max as the column's type, and numpy's float64 is a float where int64 is no int)."""
    prompt, completion = pc.as_text(df["prompt"]), pc.as_text(df["completion"])
    return pd.DataFrame(
        {
            "prompt_prefix_chars": [float(len(pc.common_prefix(prompt)))],
            "completion_prefix_chars": [float(len(pc.completion_prefix(completion)))],
            "prompt_upper_share": [round(pc.upper_share(prompt), 4)],
            "completion_upper_share": [round(pc.upper_share(completion), 4)],
            "distinct_prompts": [float(prompt.nunique())],
        }
    )


def pair_row_expectations(split: str, p: ValidateParams) -> list[Any]:
    g = p.generation
    text_types = ["str", "string", "StringDtype", "object"]
    exps = [
        _exp(
            "ExpectColumnValuesToBeInTypeList", f"schema_{c}_is_string", "error", "str", column=c, type_list=text_types
        )
        for c in ("prompt", "completion")
    ]
    exps += [
        _exp("ExpectColumnValuesToNotBeNull", f"no_null_{c}", "error", 0, column=c) for c in ("prompt", "completion")
    ]
    exps.append(min_rows(p))
    if split == "train":
        c = g.min_train_examples
        exps.append(
            _exp(
                "ExpectTableRowCountToBeBetween",
                "min_train_examples",
                c.severity,
                c.threshold,
                min_value=int(c.threshold),
            )
        )
    rates = {
        "empty_completion_rate": ("empty_completion", g.max_empty_completion_rate),
        "duplicate_pair_rate": ("duplicate_pair", g.max_duplicate_pair_rate),
        "missing_separator_rate": ("missing_separator", g.max_missing_separator_rate),
        "separator_inside_rate": ("separator_inside", g.max_separator_inside_rate),
        "no_leading_space_rate": ("no_leading_space", g.max_no_leading_space_rate),
        "missing_stop_rate": ("missing_stop", g.max_missing_stop_rate),
        "stop_inside_rate": ("stop_inside", g.max_stop_inside_rate),
    }
    if split != "train":
        rates["leakage_rate"] = ("leaked_prompt", p.max_leakage_rate)
    exps += [_rate("ExpectColumnValuesToBeNull", name, c, column=col) for name, (col, c) in rates.items()]
    long = g.long_example
    exps.append(
        _exp(
            "ExpectColumnValuesToBeNull",
            "long_example_rate",
            long.severity,
            {"max_chars": long.max_chars, "rate": long.threshold},
            mostly=1 - long.threshold,
            column="long_example",
        )
    )
    exps += [
        _rate("ExpectColumnValuesToNotMatchRegex", f"{c}_mojibake_rate", p.max_mojibake_rate, column=c, regex=MOJIBAKE)
        for c in ("prompt", "completion")
    ]
    return exps


def pair_summary_expectations(p: ValidateParams, task: pc.Task) -> list[Any]:
    g = p.generation
    limits = {
        "prompt_prefix_chars": g.max_prompt_prefix_chars,
        "completion_prefix_chars": g.max_completion_prefix_chars,
        "prompt_upper_share": g.max_upper_case_share,
        "completion_upper_share": g.max_upper_case_share,
    }
    exps = [_bound("ExpectColumnMaxToBeBetween", name, c, name, "max_value") for name, c in limits.items()]
    if task != "open-ended generation":  # open-ended generation has empty prompts by design
        c = g.min_distinct_prompts
        exps.append(_bound("ExpectColumnMinToBeBetween", "distinct_prompts", c, "distinct_prompts", "min_value"))
    return exps


def prefix_examples(records: list[QualityRecord], frames: dict[str, pd.DataFrame]) -> None:
    """A failed prefix check shows the prefix itself (GX keeps no example rows for a whole-split measure)."""
    for r in records:
        if r.passed or r.check not in ("prompt_prefix_chars", "completion_prefix_chars"):
            continue
        texts = pc.as_text(frames[r.split][r.check.split("_")[0]])
        r.examples = [pc.common_prefix(texts) if r.check.startswith("prompt") else pc.completion_prefix(texts)]


def run_generation_checks(
    frames: dict[str, pd.DataFrame], p: ValidateParams, docs_dir: Path, stop: Sequence[str] = ()
) -> list[QualityRecord]:
    """The generation suites (prompt/completion pairs) through GX, Data Docs into `docs_dir`; one record per
    check. `stop` is generation.stop (the sequences generation stops at); empty, the completions' own ending."""
    task, separator, stops = pair_endings(frames["train"], stop)
    train_prompts = set(text_key(pc.as_text(frames["train"]["prompt"])))
    batches = []
    for split in SPLITS:
        df = frames[split]
        rows = pair_columns(df, train_prompts if split != "train" else None, task, separator, stops, p.generation)
        batches += [
            (split, split, rows, pair_row_expectations(split, p)),
            (split, f"{split}_pairs", pair_summary(df), pair_summary_expectations(p, task)),
        ]
    records = run_suites(docs_dir, batches)
    prefix_examples(records, frames)
    return records
