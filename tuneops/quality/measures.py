"""What makes prompt/completion pairs good training data, measured (pure functions over pandas).

OpenAI's legacy `fine_tunes.prepare_data` checks, split into what they measure: per-row offenders (a boolean
Series, True where a row offends) and whole-column facts (a common prefix, an upper-case share, the task),
with OpenAI's limits. The checks built on them are in the registry, tuneops/quality/checks.py. This module
imports nothing of the project, so a stage that uses it (evaluate: common_suffix) depends on it alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Task = Literal["classification", "conditional generation", "open-ended generation"]

# OpenAI's limits (openai-python's validators.py). prepare-data applies them as they were; validate takes its
# thresholds from params.yaml (validate.generation), whose defaults are these numbers.
MIN_EXAMPLES = 100  # "performance tends to linearly increase for every doubling of the number of examples"
MAX_PROMPT_PREFIX = 12  # a longer common prefix is an instruction repeated on every line: fine-tuning needs none
MAX_COMPLETION_PREFIX = 4  # a completion's answer should start at once (OpenAI: a prefix of 5 or more)
MAX_UPPER_SHARE = 1 / 3  # more upper-case letters than that trains worse than normal mixed case
CLASSIFICATION_RATIO = 3  # classification: on average at least 3 rows per distinct completion

# Separators to end prompts with, and stop sequences to end completions with, in order of preference; the
# first that occurs nowhere in the data is suggested (a separator inside a prompt would end it early).
SEPARATORS = ("\n\n###\n\n", " ->", "\n\n===\n\n", "\n\n---\n\n", "\n\n===>\n\n", "\n\n--->\n\n")
# No letters in these: an appended " END" would count as upper case and then be lower-cased by that check.
STOPS = ("\n", "###", "***", "+++", "&&&", "$$$", "@@@", "%%%")


@dataclass(frozen=True)
class Lengths:
    """How long an example is (prompt + completion + eos, as tokenize counts it) and the most the model takes."""

    measure: Callable[[pd.Series, pd.Series], pd.Series]
    limit: int
    unit: Literal["tokens", "characters"]


def as_text(values: pd.Series) -> pd.Series:
    """Values as plain str (missing -> ""), so the string methods below never meet a None."""
    return values.map(_text).astype(object)


def _text(value: object) -> str:
    missing = value is None or value is pd.NA or (isinstance(value, float) and value != value)  # NaN
    return "" if missing else str(value)


def common_prefix(texts: Sequence[str]) -> str:
    return os.path.commonprefix(list(texts)) if len(texts) else ""


def common_suffix(texts: Sequence[str]) -> str:
    return common_prefix([t[::-1] for t in texts])[::-1]


def separator(prompts: Sequence[str]) -> str:
    """The separator train prompts end with, for other splits to end with too: the common ending's trailing
    run of punctuation and whitespace (`"\\n\\n###\\n\\n"` of `"\\nsentiment: positive\\n\\n###\\n\\n"`, where
    every train tweet happened to be positive), else the whole common ending."""
    suffix = common_suffix(prompts)
    return re.search(r"[\W_]*$", suffix).group() or suffix  # type: ignore[union-attr]  # always matches


def answer(completion: str) -> str:
    """A completion without its one leading whitespace: the answer itself, where a common prefix is measured
    (the leading space is recommended, so it must not count towards a prefix that has to go)."""
    return completion[1:] if completion[:1].isspace() else completion


def completion_prefix(completions: Sequence[str]) -> str:
    return common_prefix([answer(c) for c in completions])


def infer_task(prompts: pd.Series, completions: pd.Series) -> Task:
    """OpenAI's rule: empty prompts are open-ended generation; completions that take few distinct values
    (fewer than a third of the rows) are class labels; anything else is conditional generation."""
    if len(prompts) and (prompts.str.len() == 0).all():
        return "open-ended generation"
    if completions.nunique() < len(completions) / CLASSIFICATION_RATIO:
        return "classification"
    return "conditional generation"


def fresh_ending(texts: pd.Series, options: Sequence[str]) -> str:
    """The first of `options` that occurs in none of `texts` (an arrow only for one-line texts); failing
    all, a numbered marker that does not occur either."""
    multiline = texts.str.contains("\n", regex=False).any()
    for option in options:
        if option == " ->" and multiline:
            continue
        if not texts.str.contains(option, regex=False).any():
            return option
    n = 1
    while texts.str.contains(marker := f"\n\n###{n}###\n\n", regex=False).any():
        n += 1
    return marker


def empty_completions(completions: pd.Series) -> pd.Series:
    """Completions with nothing but whitespace: there is nothing to learn from them."""
    return completions.str.strip() == ""


def duplicate_pairs(prompts: pd.Series, completions: pd.Series) -> pd.Series:
    """Every repeat of a prompt/completion pair seen earlier (the first stays)."""
    return pd.DataFrame({"p": prompts, "c": completions}).duplicated(keep="first")


def char_lengths(prompts: pd.Series, completions: pd.Series) -> pd.Series:
    return prompts.str.len() + completions.str.len()


def too_long(lengths: pd.Series, limit: int) -> pd.Series:
    return lengths > limit


def lacks_ending(texts: pd.Series, ending: str) -> pd.Series:
    """Texts that do not end with `ending` (all of them when there is none)."""
    return ~texts.str.endswith(ending) if ending else pd.Series(True, index=texts.index)


def lacks_any_ending(texts: pd.Series, endings: Sequence[str]) -> pd.Series:
    """Texts that end with none of `endings` (a model told to stop at them would run on)."""
    ends = pd.Series(False, index=texts.index)
    for ending in endings:
        ends |= texts.str.endswith(ending)
    return ~ends


def ending_inside(texts: pd.Series, endings: Sequence[str]) -> pd.Series:
    """Texts in which one of `endings` occurs before their end: a separator there splits the prompt in two, a
    stop sequence there cuts the generated completion short."""
    inside = pd.Series(False, index=texts.index)
    for ending in (e for e in endings if e):
        body = texts.map(lambda t, e=ending: t[: -len(e)] if t.endswith(e) else t)
        inside |= body.str.contains(ending, regex=False)
    return inside


def no_leading_space(completions: pd.Series) -> pd.Series:
    """Completions that do not start with whitespace: GPT-2's byte-level BPE reads " positive" as one token
    and "positive" after a separator as other ones, so the space keeps an answer's tokens the usual ones."""
    return ~completions.str[:1].str.isspace()


def upper_share(texts: pd.Series) -> float:
    """Upper-case letters among all cased letters (0 when there are none): a letter is upper case where
    lower-casing changes it, lower case where upper-casing does (compared as code points, at numpy's pace)."""
    joined = "".join(texts)
    lowered, raised = joined.lower(), joined.upper()
    if len(lowered) == len(joined) == len(raised):
        points, low, up = (np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in (joined, lowered, raised))
        upper, lower = int((points != low).sum()), int((points != up).sum())
    else:  # a letter whose other case is two characters (German ß, Turkish İ): count one by one
        upper, lower = sum(c.isupper() for c in joined), sum(c.islower() for c in joined)
    return upper / (upper + lower) if upper + lower else 0.0
