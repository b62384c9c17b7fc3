"""The data-quality checks of prompt/completion pairs, each defined once: the registry (CHECKS).

An entry says what it measures (a pure function of the pairs), the name validate records it under
(QualityRecord.check), its params key (validate.generation.<param>: threshold and severity), and what
`tuneops prepare-data` makes of it: OpenAI's fixed limit, the verdict and message when it is crossed, the fix.
Built from CHECKS: validate's Great Expectations suites for generation data (generation_suites.py), and
prepare-data's findings and fixes (prepare.py), which the upload check (jobs/file_check.py) runs too.

prepare-data reports coarser than validate: its `separator` row covers all prompts being the same, a missing
separator and one inside the prompts, which validate records apart. So an entry names the prepare-data row
(`Report`) it belongs to; that row is the first of its entries to fail, in CHECKS' order, which is also the
order --fix applies fixes in. An entry without a `param` is prepare-data's alone, one without a report validate's.

Adding a check: an entry here, and its threshold in params.yaml (with its field in GenerationChecks).
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import JsonValue

from tuneops.data.splits import text_key
from tuneops.quality import measures as pc
from tuneops.quality.kinds import (
    Pairs,
    Report,
    RowCheck,
    SplitCheck,
    add_leading_space,
    appending,
    completion_prefix,
    dropping,
    ending_inside,
    ending_of,
    generating,
    lower_casing,
    no_common_ending,
    prompt_prefix,
    prompted,
    shown,
    strip_completion_prefix,
    strip_prompt_prefix,
    where,
)


def upper_case(column: Literal["prompt", "completion"]) -> SplitCheck:
    """The share of upper-case letters: one check a column, the two sharing one threshold."""
    report = Report(
        f"{column}_upper_case",
        ok=lambda p: f"{pc.upper_share(getattr(p, column)):.0%} of letters upper case",
        observed=lambda p: round(pc.upper_share(getattr(p, column)), 4),
    )
    return SplitCheck(
        name=f"{column}_upper_share",
        param="max_upper_case_share",
        report=report,
        value=lambda p: pc.upper_share(getattr(p, column)),
        limit=pc.MAX_UPPER_SHARE,
        says=lambda _, share: (
            f"{share:.0%} of the {column}s' letters are upper case (more than a third): mostly upper-case text "
            "trains worse than the mixed case of normal language; lower-case it if case means nothing here"
        ),
        fix=lower_casing(column),
    )


def report(name: str, ok: str, observed: JsonValue = 0) -> Report:
    """A prepare-data row with a fixed message when it passes."""
    return Report(name, ok=lambda _: ok, observed=lambda _: observed)


def empty(p: Pairs) -> pd.Series:
    return pc.empty_completions(p.completion)


def duplicate(p: Pairs) -> pd.Series:
    return pc.duplicate_pairs(p.prompt, p.completion)


def too_long(p: Pairs) -> pd.Series:
    return pc.too_long(p.lengths.measure(p.prompt, p.completion), p.lengths.limit)


# --- the registry: prepare-data's rows shared by several entries, then the entries in --fix's order -----

SEPARATOR = Report(
    "separator",
    ok=lambda p: f"every prompt ends with the separator {shown(p.separator)}",
    observed=lambda p: p.separator,
    skipped="open-ended generation (empty prompts): no separator needed",
)
STOP = Report(
    "stop_sequence",
    ok=lambda p: f"every completion ends with the stop sequence {shown(ending_of(p, 'completion'))}",
    observed=lambda p: ending_of(p, "completion"),
    skipped="classification: a label needs no stop sequence",
)
EXAMPLES = Report("examples", ok=lambda p: f"{len(p.prompt)} prompt/completion pairs", observed=lambda p: len(p.prompt))
TASK = Report(
    "task",
    ok=lambda p: p.task + (f" ({p.completion.nunique()} distinct completions)" if p.task == "classification" else ""),
    observed=lambda p: p.task,
)

CHECKS: tuple[RowCheck | SplitCheck, ...] = (
    upper_case("prompt"),
    upper_case("completion"),
    SplitCheck(
        name="prompt_prefix_chars",
        param="max_prompt_prefix_chars",
        report=Report(
            "prompt_prefix", ok=lambda p: f"common prefix of {len(prompt_prefix(p))} characters", observed=prompt_prefix
        ),
        value=lambda p: float(len(prompt_prefix(p))),
        limit=pc.MAX_PROMPT_PREFIX,
        excused=lambda p: bool((p.prompt == prompt_prefix(p)).all()),  # all the same: the separator check says so
        says=lambda p, _: (
            f"every prompt starts with {shown(prompt_prefix(p))}: fine-tuning needs no instruction repeated on "
            "every example, only the input"
        ),
        fix=strip_prompt_prefix,
        example=prompt_prefix,
    ),
    SplitCheck(
        name="completion_prefix_chars",
        param="max_completion_prefix_chars",
        report=Report(
            "completion_prefix",
            ok=lambda p: f"common prefix of {len(completion_prefix(p))} characters",
            observed=completion_prefix,
        ),
        value=lambda p: float(len(completion_prefix(p))),
        limit=pc.MAX_COMPLETION_PREFIX,
        excused=lambda p: bool((p.completion.map(pc.answer) == completion_prefix(p)).all()),
        says=lambda p, _: (
            f"every completion starts with {shown(completion_prefix(p))}: a completion should hold only the output"
        ),
        fix=strip_completion_prefix,
        example=completion_prefix,
    ),
    RowCheck(
        name="empty_completion_rate",
        param="max_empty_completion_rate",
        report=report("empty_completions", "no empty completion"),
        verdict="error",
        offends=empty,
        says=lambda _, e: (
            f"{int(e.sum())} completion(s) empty or only whitespace{where(e)}: nothing to learn from them"
        ),
        fix=dropping(empty, "row(s) with empty completions"),
    ),
    RowCheck(
        name="duplicate_pair_rate",
        param="max_duplicate_pair_rate",
        report=report("duplicate_pairs", "no duplicated pair"),
        offends=duplicate,
        says=lambda _, d: f"{int(d.sum())} prompt/completion pair(s) repeat an earlier one{where(d)}",
        fix=dropping(duplicate, "duplicate row(s)"),
    ),
    SplitCheck(
        name="distinct_prompts",
        param="min_distinct_prompts",
        report=SEPARATOR,
        verdict="error",
        applies=prompted,
        value=lambda p: float(p.prompt.nunique()),
        limit=2,
        bound="min",
        excused=lambda p: len(p.prompt) <= 1,
        observed=lambda p: p.prompt.iloc[0],
        says=lambda p, _: (
            f"all prompts are the same ({shown(p.prompt.iloc[0])}): leave them empty for open-ended generation, "
            "or give each example its own prompt"
        ),
    ),
    RowCheck(
        name="missing_separator_rate",
        param="max_missing_separator_rate",
        report=SEPARATOR,
        applies=prompted,
        offends=lambda p: pc.lacks_ending(p.prompt, p.separator),
        says=no_common_ending(
            "prompt", "separator", "tells the model where the prompt ends and the completion begins", pc.SEPARATORS
        ),
        fix=appending("prompt", "separator", pc.SEPARATORS),
        observed=SEPARATOR.observed,
        shows="prompt_end",
        whole_file=lambda p: not p.separator,  # the prompts have no common ending (so none, when there are none)
    ),
    RowCheck(
        name="separator_inside_rate",
        param="max_separator_inside_rate",
        report=SEPARATOR,
        applies=prompted,
        offends=lambda p: pc.ending_inside(p.prompt, [p.separator]),
        says=ending_inside("prompt", "separator", "the model cannot tell where the prompt ends"),
        fix=appending("prompt", "separator", pc.SEPARATORS),
        observed=SEPARATOR.observed,
        shows="prompt_end",
    ),
    RowCheck(
        name="no_leading_space_rate",
        param="max_no_leading_space_rate",
        report=report("leading_space", "every completion starts with a whitespace"),
        offends=lambda p: pc.no_leading_space(p.completion),
        says=lambda _, bare: (
            f"{int(bare.sum())} completion(s) do not start with a whitespace{where(bare)}: byte-level BPE (GPT-2) "
            'tokenizes " positive" as one common token, "positive" as others'
        ),
        fix=add_leading_space,
        shows="completion",
    ),
    RowCheck(
        name="missing_stop_rate",
        param="max_missing_stop_rate",
        report=STOP,
        applies=generating,
        offends=lambda p: pc.lacks_any_ending(p.completion, p.stops),
        says=no_common_ending("completion", "stop sequence", "tells generation where to stop", pc.STOPS),
        fix=appending("completion", "stop sequence", pc.STOPS),
        observed=STOP.observed,
        shows="completion",
        whole_file=lambda p: not p.stops,
    ),
    RowCheck(
        name="stop_inside_rate",
        param="max_stop_inside_rate",
        report=STOP,
        applies=generating,
        offends=lambda p: pc.ending_inside(p.completion, p.stops),
        says=ending_inside("completion", "stop sequence", "generation would stop there"),
        fix=appending("completion", "stop sequence", pc.STOPS),
        observed=STOP.observed,
        shows="completion",
    ),
    RowCheck(
        name="leakage_rate",
        param="max_leakage_rate",  # validate.max_leakage_rate, the threshold classification's leakage has too
        report=None,
        splits="held_out",
        offends=lambda p: text_key(p.prompt).isin(p.train_prompts or ()),
        says=lambda _, __: "",
        shows="prompt",
        column="leaked_prompt",
    ),
    # after every fix that adds characters
    RowCheck(
        name="long_example_rate",
        param="long_example",
        report=Report(
            "long_examples",
            ok=lambda p: f"every example within {p.lengths.limit} {p.lengths.unit}",
            observed=lambda _: 0,
        ),
        offends=too_long,
        says=lambda p, long: (
            f"{int(long.sum())} example(s) longer than {p.lengths.limit} {p.lengths.unit}{where(long)}: "
            "they would be cut short"
        ),
        fix=dropping(too_long, "long example(s)"),
    ),
    # after every fix that removes rows
    SplitCheck(
        name="no_pairs",
        param=None,  # validate holds every split to min_rows instead
        report=EXAMPLES,
        verdict="error",
        value=lambda p: float(len(p.prompt)),
        limit=1,
        bound="min",
        says=lambda _, __: "no prompt/completion pairs left",
    ),
    SplitCheck(
        name="min_train_examples",
        param="min_train_examples",
        report=EXAMPLES,
        splits="train",
        value=lambda p: float(len(p.prompt)),
        limit=pc.MIN_EXAMPLES,
        bound="min",
        says=lambda p, _: (
            f"{len(p.prompt)} prompt/completion pairs: a few hundred train better (quality tends to grow with every "
            "doubling)"
        ),
        rows_counted=True,
    ),
    SplitCheck(
        name="distinct_completions",
        param=None,  # prepare-data's alone: validate has no threshold for it
        report=TASK,
        verdict="error",
        value=lambda p: float(p.completion.nunique()),
        limit=2,
        bound="min",
        excused=lambda p: len(p.prompt) <= 1,
        says=lambda p, _: f"every completion is {shown(p.completion.iloc[0])}: the model would learn one answer",
    ),
)
