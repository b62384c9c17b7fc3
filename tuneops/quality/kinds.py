"""What a check of prompt/completion pairs is, for the registry (checks.py) to hold, and the wording and fixes
its entries share.

`Pairs` is what a check measures: the texts and what they are held to. A `RowCheck` finds the rows that offend,
a `SplitCheck` one number for a whole split; both say how validate records them (name, params key) and how
prepare-data reports them (its row, `Report`; OpenAI's limit, verdict, message and fix). validate's
Great Expectations suites (generation_suites.py) and prepare-data's findings (prepare.py) are built from these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import JsonValue

from tuneops.config.records import Verdict
from tuneops.quality import measures as pc

Fix = tuple[str, Callable[[pd.DataFrame], pd.DataFrame]]  # what --fix says it does, and doing it


@dataclass(frozen=True)
class Pairs:
    """Prompts and completions as str (indexed as the file's lines or the split's rows) and what they are held
    to: a file is held to its own common endings (`of_file`), a validate split to train's."""

    prompt: pd.Series
    completion: pd.Series
    task: pc.Task
    separator: str  # what every prompt should end with ("": none in common)
    stops: tuple[str, ...]  # what completions should end with (empty: none in common)
    lengths: pc.Lengths
    train_prompts: AbstractSet[str] | None = None  # a held-out split: train's prompts (text_key), for leakage

    @classmethod
    def of_file(cls, df: pd.DataFrame, lengths: pc.Lengths) -> Pairs:
        prompt, completion = df["prompt"], df["completion"]
        stop = pc.common_suffix(completion)
        task = pc.infer_task(prompt, completion)
        return cls(prompt, completion, task, pc.common_suffix(prompt), (stop,) if stop else (), lengths)

    def none(self) -> pd.Series:
        return pd.Series(False, index=self.prompt.index)


def always(_: pc.Task) -> bool:
    return True


def prompted(task: pc.Task) -> bool:
    return task != "open-ended generation"  # open-ended generation has empty prompts by design


def generating(task: pc.Task) -> bool:
    return task != "classification"  # a class label needs no stop sequence


@dataclass(frozen=True)
class Report:
    """One row of prepare-data's table: its name (PrepCheck.check), what it says when its entries pass, or
    when none of them applies to the task."""

    name: str
    ok: Callable[[Pairs], str]
    observed: Callable[[Pairs], JsonValue]
    skipped: str = ""


@dataclass(frozen=True, kw_only=True)
class Check:
    """What every entry has; RowCheck and SplitCheck add the measure."""

    name: str  # validate's record (QualityRecord.check)
    param: str | None  # validate.generation.<param> (else validate.<param>); None: prepare-data's alone
    report: Report | None  # prepare-data's row; None: validate's alone
    verdict: Verdict = "warning"  # prepare-data's, when OpenAI's limit is crossed
    applies: Callable[[pc.Task], bool] = always
    observed: Callable[[Pairs], JsonValue] | None = None  # prepare-data's when it fails (None: see subclass)
    splits: Literal["all", "train", "held_out"] = "all"  # which splits validate checks


@dataclass(frozen=True, kw_only=True)
class RowCheck(Check):
    """Rows that offend (True where one does). validate allows `threshold` of a split's rows to, prepare-data
    none; what prepare-data observes is how many do, unless `observed` says otherwise."""

    offends: Callable[[Pairs], pd.Series]
    says: Callable[[Pairs, pd.Series], str] = lambda _, __: ""  # prepare-data's message, given the offenders
    fix: Callable[[Pairs, pd.Series], Fix] | None = None
    shows: Literal["pair", "prompt_end", "prompt", "completion"] = "pair"  # validate's example of an offender
    # prepare-data's verdict on the whole file, where it is not "a row offends" (then it names no lines).
    whole_file: Callable[[Pairs], bool] | None = None
    column: str = ""  # validate's column of offenders; "" = the name without _rate

    @property
    def gx_column(self) -> str:
        return self.column or self.name.removesuffix("_rate")


@dataclass(frozen=True, kw_only=True)
class SplitCheck(Check):
    """One number for a whole split (or file), held to a bound: validate's from params, prepare-data's `limit`
    (what prepare-data observes is its report's, unless `observed` says otherwise)."""

    value: Callable[[Pairs], float]
    limit: float  # prepare-data's (OpenAI's); params.yaml's default is the same
    bound: Literal["max", "min"] = "max"
    says: Callable[[Pairs, float], str]
    fix: Callable[[Pairs, float], Fix] | None = None
    excused: Callable[[Pairs], bool] = lambda _: False  # prepare-data lets it pass anyway
    example: Callable[[Pairs], str] | None = None  # validate's example when it fails (GX keeps none of a split)
    rows_counted: bool = False  # the value is the row count: validate holds the table's row count

    def passes(self, value: float) -> bool:
        return value <= self.limit if self.bound == "max" else value >= self.limit


# --- how prepare-data words its findings ----------------------------------------------------------------


def shown(text: str) -> str:
    """A separator or stop sequence as it is written in JSON: newlines visible."""
    return json.dumps(text, ensure_ascii=False)


def where(offenders: pd.Series) -> str:
    """Where the offending rows are: read_pairs names the index `line` (JSONL) or `row` (a table's data rows)."""
    lines = [str(i) for i in offenders.index[offenders][:5]]
    more = int(offenders.sum()) - len(lines)
    return f" (at {offenders.index.name or 'row'} {', '.join(lines)}{f' and {more} more' if more > 0 else ''})"


def dropping(offends: Callable[[Pairs], pd.Series], what: str) -> Callable[[Pairs, pd.Series], Fix]:
    """A fix that removes the offending rows (found again in the frame it is given)."""

    def fix(p: Pairs, offenders: pd.Series) -> Fix:
        return f"remove {int(offenders.sum())} {what}", lambda d: d[~offends(Pairs.of_file(d, p.lengths))]

    return fix


def appending(
    column: Literal["prompt", "completion"], name: str, options: tuple[str, ...]
) -> Callable[[Pairs, pd.Series], Fix]:
    """A fix that ends every text of `column` with the first of `options` that occurs nowhere in them."""

    def fix(p: Pairs, _: pd.Series) -> Fix:
        fresh = pc.fresh_ending(getattr(p, column), options)
        return f"append the {name} {shown(fresh)} to every {column}", lambda d: d.assign(**{column: d[column] + fresh})

    return fix


def lower_casing(column: str) -> Callable[[Pairs, float], Fix]:
    return lambda _, __: (f"lower-case every {column}", lambda d: d.assign(**{column: d[column].str.lower()}))


def prompt_prefix(p: Pairs) -> str:
    return pc.common_prefix(p.prompt)


def completion_prefix(p: Pairs) -> str:
    return pc.completion_prefix(p.completion)


def strip_prompt_prefix(p: Pairs, _: float) -> Fix:
    prefix = prompt_prefix(p)
    return f"remove {shown(prefix)} from the start of every prompt", lambda d: d.assign(
        prompt=d["prompt"].str[len(prefix) :]
    )


def strip_completion_prefix(p: Pairs, _: float) -> Fix:
    prefix = completion_prefix(p)

    def strip(completion: str) -> str:
        lead = completion[: len(completion) - len(pc.answer(completion))]  # the one leading space stays
        return lead + pc.answer(completion)[len(prefix) :]

    return f"remove {shown(prefix)} from the start of every completion", lambda d: d.assign(
        completion=d["completion"].map(strip)
    )


def add_leading_space(_: Pairs, __: pd.Series) -> Fix:
    def fix(d: pd.DataFrame) -> pd.DataFrame:
        bare = pc.no_leading_space(d["completion"])
        return d.assign(completion=d["completion"].where(~bare, " " + d["completion"]))

    return "prepend a space to completions without one", fix


def ending_inside(column: str, ending: str, harm: str) -> Callable[[Pairs, pd.Series], str]:
    return lambda p, inside: (
        f"every {column} ends with {shown(ending_of(p, column))}, but {int(inside.sum())} also contain it before "
        f"the end{where(inside)}: {harm}"
    )


def ending_of(p: Pairs, column: str) -> str:
    return p.separator if column == "prompt" else "".join(p.stops[:1])


def no_common_ending(
    column: Literal["prompt", "completion"], name: str, purpose: str, options: tuple[str, ...]
) -> Callable[[Pairs, pd.Series], str]:
    return lambda p, _: (
        f"the {column}s do not end with a common {name}, which {purpose}; "
        f"{shown(pc.fresh_ending(getattr(p, column), options))} occurs nowhere in them"
    )
