"""validate on generation data (task: generation): the check registry (checks.py) as Great Expectations suites.

Two suites a split: `<split>` over its rows, `<split>_pairs` over one row of whole-split measures. A RowCheck
becomes a column holding the offending row's text and null elsewhere, expected null on at least 1 - threshold
of the rows: Data Docs and the review page then show the offending texts themselves. A SplitCheck becomes a
column of the one row, held to its bound. Thresholds and severities are params.yaml's (validate.generation);
lengths are counted in characters here (validate reads no model; see validate.generation.long_example).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tuneops.config.checks import CharLimitCheck, Check, GenerationChecks, ValidateParams
from tuneops.config.paths import SPLITS
from tuneops.config.records import QualityRecord
from tuneops.data.splits import text_key
from tuneops.quality import measures as pc
from tuneops.quality.checks import CHECKS
from tuneops.quality.kinds import Pairs, RowCheck, SplitCheck
from tuneops.quality.suites import (
    MOJIBAKE,
    TEXT_TYPES,
    Batch,
    column_bound,
    expectation,
    min_rows,
    rate,
    row_count,
    run_suites,
)

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

EXAMPLE_TAIL = 200  # a separator is at a prompt's end: show its end
ROW_CHECKS = [c for c in CHECKS if isinstance(c, RowCheck) and c.param]
SPLIT_CHECKS = [c for c in CHECKS if isinstance(c, SplitCheck) and c.param]


def tail(text: str) -> str:
    return text if len(text) <= EXAMPLE_TAIL else "…" + text[-EXAMPLE_TAIL:]


def offenders(texts: pd.Series, mask: pd.Series) -> pd.Series:
    """`texts` where `mask` holds, None elsewhere (what ExpectColumnValuesToBeNull counts)."""
    return texts.astype(object).where(mask.to_numpy(), None)


def limits(p: ValidateParams, param: str) -> Check | CharLimitCheck:
    """validate.generation.<param>, else validate.<param> (leakage shares classification's threshold)."""
    found: Check | CharLimitCheck = getattr(p.generation, param, None) or getattr(p, param)
    return found


def checked_in(check: RowCheck | SplitCheck, split: str) -> bool:
    return check.splits == "all" or (check.splits == "train") == (split == "train")


def pair_endings(train: pd.DataFrame, stop: Sequence[str]) -> tuple[pc.Task, str, list[str]]:
    """What every split is held to, learnt from train: the task, the separator (measures.separator), and
    the stop sequences (generation.stop, else the ending common to train completions)."""
    prompts, completions = pc.as_text(train["prompt"]), pc.as_text(train["completion"])
    task = pc.infer_task(prompts, completions)
    separator = pc.separator(prompts) if task != "open-ended generation" else ""
    stops = list(stop) or [s for s in [pc.common_suffix(completions)] if s]
    return task, separator, stops


def split_pairs(
    df: pd.DataFrame,
    train_prompts: AbstractSet[str] | None,
    task: pc.Task,
    separator: str,
    stops: Sequence[str],
    g: GenerationChecks,
) -> Pairs:
    """A split's pairs held to train's endings; `train_prompts` for a held-out split, None for train."""
    prompt, completion = pc.as_text(df["prompt"]), pc.as_text(df["completion"])
    lengths = pc.Lengths(pc.char_lengths, g.long_example.max_chars, "characters")
    return Pairs(prompt, completion, task, separator, tuple(stops), lengths, train_prompts)


def pair_columns(
    df: pd.DataFrame,
    train_prompts: AbstractSet[str] | None,
    task: pc.Task,
    separator: str,
    stops: list[str],
    g: GenerationChecks,
) -> pd.DataFrame:
    """The split with one column per row check: the offending text, or None."""
    return row_columns(df, split_pairs(df, train_prompts, task, separator, stops, g))


def row_columns(df: pd.DataFrame, p: Pairs) -> pd.DataFrame:
    split = "train" if p.train_prompts is None else "held-out"
    shown = {
        "pair": p.prompt.map(tail) + " ⟶ " + p.completion,
        "prompt_end": p.prompt.map(tail),
        "prompt": p.prompt,
        "completion": p.completion,
    }
    # A row check that does not apply to the task runs on a column of nulls: its record is there, and passed.
    columns = {
        c.gx_column: offenders(shown[c.shows], c.offends(p) if c.applies(p.task) else p.none())
        for c in ROW_CHECKS
        if checked_in(c, split)
    }
    return df.assign(**columns, **{c: as_string_dtype(df[c]) for c in ("prompt", "completion")})


def as_string_dtype(values: pd.Series) -> pd.Series:
    """pandas' string dtype where every value is a str (or missing): GX's type check fails object columns of
    str. Values of other types stay as they are, for that check to name."""
    return values.astype("string") if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty") else values


REJECTED_OFFENDS = "rejected_empty_or_same"  # preference data: the offending non-preferred reply, else null


def rejected_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Preference data (a `rejected` column): each row's rejected reply where it is empty or the preferred one
    itself (DPO learns nothing from a pair it cannot tell apart), None elsewhere. Other data: unchanged."""
    if "rejected" not in df.columns:
        return df
    rejected, completion = pc.as_text(df["rejected"]), pc.as_text(df["completion"])
    bad = (rejected.str.strip() == "") | (rejected == completion)
    return df.assign(**{REJECTED_OFFENDS: offenders(rejected, bad), "rejected": as_string_dtype(df["rejected"])})


def rejected_expectations(df: pd.DataFrame) -> list[Expectation]:
    """No pair of preference data whose rejected reply is empty or the same as the preferred one (an error)."""
    if "rejected" not in df.columns:
        return []
    return [expectation("ExpectColumnValuesToBeNull", "rejected_differs", "error", 0, column=REJECTED_OFFENDS)]


def pair_summary(p: Pairs) -> pd.DataFrame:
    """One row of whole-split measures (floats: GX hands back a column's max as the column's type, and numpy's
    float64 is a float where int64 is no int)."""
    return pd.DataFrame({c.name: [round(c.value(p), 4)] for c in SPLIT_CHECKS if not c.rows_counted})


def pair_row_expectations(split: str, p: ValidateParams) -> list[Expectation]:
    exps = [
        expectation(
            "ExpectColumnValuesToBeInTypeList", f"schema_{c}_is_string", "error", "str", column=c, type_list=TEXT_TYPES
        )
        for c in ("prompt", "completion")
    ]
    exps += [
        expectation("ExpectColumnValuesToNotBeNull", f"no_null_{c}", "error", 0, column=c)
        for c in ("prompt", "completion")
    ]
    exps.append(min_rows(p))
    exps += [
        row_count(c.name, limits(p, c.param), c.bound)
        for c in SPLIT_CHECKS
        if c.rows_counted and c.param and checked_in(c, split)
    ]
    exps += [row_expectation(c, limits(p, c.param)) for c in ROW_CHECKS if c.param and checked_in(c, split)]
    exps += [
        rate("ExpectColumnValuesToNotMatchRegex", f"{c}_mojibake_rate", p.max_mojibake_rate, column=c, regex=MOJIBAKE)
        for c in ("prompt", "completion")
    ]
    return exps


def row_expectation(check: RowCheck, c: Check | CharLimitCheck) -> Expectation:
    """Offenders allowed on at most c.threshold of the rows; a length limit shows its length beside the rate."""
    if isinstance(c, CharLimitCheck):
        shown = {"max_chars": c.max_chars, "rate": c.threshold}
        return rate("ExpectColumnValuesToBeNull", check.name, c, shown, column=check.gx_column)
    return rate("ExpectColumnValuesToBeNull", check.name, c, column=check.gx_column)


def pair_summary_expectations(p: ValidateParams, task: pc.Task) -> list[Expectation]:
    kinds = {"max": "ExpectColumnMaxToBeBetween", "min": "ExpectColumnMinToBeBetween"}  # a check that does not
    # apply to the task has no record (open-ended generation's prompts are all empty: distinct_prompts is moot)
    return [
        column_bound(kinds[c.bound], c.name, limits(p, c.param), c.name, f"{c.bound}_value")
        for c in SPLIT_CHECKS
        if c.param and not c.rows_counted and c.applies(task)
    ]


def split_examples(records: list[QualityRecord], pairs: dict[str, Pairs]) -> None:
    """A failed whole-split check shows its `example` (GX keeps no example rows for a whole-split measure)."""
    examples = {c.name: c.example for c in SPLIT_CHECKS if c.example}
    for r in records:
        if not r.passed and r.check in examples:
            r.examples = [examples[r.check](pairs[r.split])]


def run_generation_checks(
    frames: dict[str, pd.DataFrame], p: ValidateParams, docs_dir: Path, stop: Sequence[str] = ()
) -> list[QualityRecord]:
    """The generation suites (prompt/completion pairs) through GX, Data Docs into `docs_dir`; one record per
    check. `stop` is generation.stop (the sequences generation stops at); empty, the completions' own ending."""
    task, separator, stops = pair_endings(frames["train"], stop)
    train_prompts = set(text_key(pc.as_text(frames["train"]["prompt"])))
    pairs = {
        split: split_pairs(
            frames[split], train_prompts if split != "train" else None, task, separator, stops, p.generation
        )
        for split in SPLITS
    }
    batches: list[Batch] = []
    for split in SPLITS:
        batches += [
            (
                split,
                split,
                rejected_columns(row_columns(frames[split], pairs[split])),
                pair_row_expectations(split, p) + rejected_expectations(frames[split]),
            ),
            (split, f"{split}_pairs", pair_summary(pairs[split]), pair_summary_expectations(p, task)),
        ]
    records = run_suites(docs_dir, batches)
    split_examples(records, pairs)
    return records
