"""`tuneops prepare-data`: check a prompt/completion file the way OpenAI's `fine_tunes.prepare_data` did, and fix it.

Each check is a pure function of the pairs (a DataFrame indexed by the rows' line numbers in the file) that
returns a Finding: a verdict (ok / warning / error), a message, what was observed, and where it has one a fix
(a function from pairs to pairs). The measures themselves live in tuneops/quality/measures.py, which the validate
stage runs as Great Expectations expectations on generation data. `--fix` applies the fixes in an order in
which none undoes another, and checks again until nothing changes, so the file it writes passes every check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tuneops.config.errors import TransientError, UserError
from tuneops.config.records import PreparedFile, PrepareReport, PrepCheck, Verdict
from tuneops.io.files import write_json, write_text
from tuneops.quality import measures as pc

FIELDS = ("prompt", "completion")
MAX_LINES = 20  # offending lines kept in a record: enough to find them, not the whole file again
MAX_VALID = 1000  # OpenAI's cap on the validation half of a split
SPLIT_SEED = 42
CHARS_PER_TOKEN = 4  # English text in GPT-2's BPE: only for the fallback when no tokenizer can be loaded


@dataclass(frozen=True)
class Lengths:
    """How long an example is (prompt + completion + eos, as tokenize counts it) and the most the model takes."""

    measure: Callable[[pd.Series, pd.Series], pd.Series]
    limit: int
    unit: Literal["tokens", "characters"]


@dataclass(frozen=True)
class Finding:
    record: PrepCheck
    fix: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    @property
    def failed(self) -> bool:
        return self.record.verdict != "ok"


def finding(
    check: str,
    verdict: Verdict,
    message: str,
    observed: Any = None,
    offenders: pd.Series | None = None,
    fix: tuple[str, Callable[[pd.DataFrame], pd.DataFrame]] | None = None,
) -> Finding:
    lines = [int(i) for i in offenders.index[offenders][:MAX_LINES]] if offenders is not None else []
    return Finding(
        PrepCheck(
            check=check,
            verdict=verdict,
            message=message,
            observed=observed,
            fix=fix[0] if fix else None,
            lines=lines,
        ),
        fix[1] if fix else None,
    )


def shown(text: str) -> str:
    """A separator or stop sequence as it is written in JSON: newlines visible."""
    return json.dumps(text, ensure_ascii=False)


def where(offenders: pd.Series) -> str:
    """Where the offending rows are: read_pairs names the index `line` (JSONL) or `row` (a table's data rows)."""
    lines = [str(i) for i in offenders.index[offenders][:5]]
    more = int(offenders.sum()) - len(lines)
    return f" (at {offenders.index.name or 'row'} {', '.join(lines)}{f' and {more} more' if more > 0 else ''})"


# --- the checks, in the order --fix applies them ------------------------------------------------------------


def check_keys(df: pd.DataFrame, _: Lengths) -> Finding:
    """`prompt` and `completion` present; present in other casing is fixed by renaming."""
    lower = {str(c).lower(): c for c in df.columns if str(c) not in FIELDS}
    missing = [f for f in FIELDS if f not in df.columns and f not in lower]
    renames = {lower[f]: f for f in FIELDS if f not in df.columns and f in lower}
    if missing:
        have = ", ".join(map(str, df.columns))
        return finding(
            "keys", "error", f"no {' or '.join(map(repr, missing))} key (keys: {have}); name them prompt and completion"
        )
    if renames:
        listed = ", ".join(f"{old!r} -> {new!r}" for old, new in renames.items())
        return finding(
            "keys", "error", f"keys must be lower case: {listed}", listed, fix=(f"rename {listed}", rename(renames))
        )
    return finding("keys", "ok", "prompt and completion present", list(FIELDS))


def rename(renames: dict[str, str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.rename(columns=renames)


def check_extra_fields(df: pd.DataFrame, _: Lengths) -> Finding:
    extra = [c for c in map(str, df.columns) if c not in FIELDS and not is_case_variant(df, c)]
    if not extra:
        return finding("extra_fields", "ok", "no other fields", [])
    return finding(
        "extra_fields",
        "warning",
        f"fields other than prompt and completion are not trained on: {', '.join(extra)}",
        extra,
        fix=(f"drop {', '.join(extra)}", lambda d: d[[c for c in d.columns if c in FIELDS]]),
    )


def is_case_variant(df: pd.DataFrame, column: str) -> bool:
    """`Prompt` where there is no `prompt`: the key check renames it, so it is no extra field."""
    return column.lower() in FIELDS and column.lower() not in df.columns


def check_upper_case(field: str) -> Callable[[pd.DataFrame, Lengths], Finding]:
    def check(df: pd.DataFrame, _: Lengths) -> Finding:
        share = pc.upper_share(df[field])
        name = f"{field}_upper_case"
        if share <= pc.MAX_UPPER_SHARE:
            return finding(name, "ok", f"{share:.0%} of letters upper case", round(share, 4))
        return finding(
            name,
            "warning",
            f"{share:.0%} of the {field}s' letters are upper case (more than a third): mostly upper-case text "
            "trains worse than the mixed case of normal language; lower-case it if case means nothing here",
            round(share, 4),
            fix=(f"lower-case every {field}", lambda d: d.assign(**{field: d[field].str.lower()})),
        )

    return check


def check_prompt_prefix(df: pd.DataFrame, _: Lengths) -> Finding:
    prefix = pc.common_prefix(df["prompt"])
    if len(prefix) <= pc.MAX_PROMPT_PREFIX or (df["prompt"] == prefix).all():
        return finding("prompt_prefix", "ok", f"common prefix of {len(prefix)} characters", prefix)
    return finding(
        "prompt_prefix",
        "warning",
        f"every prompt starts with {shown(prefix)}: fine-tuning needs no instruction repeated on every example, "
        "only the input",
        prefix,
        fix=(f"remove {shown(prefix)} from the start of every prompt", strip_prompt_prefix(prefix)),
    )


def strip_prompt_prefix(prefix: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.assign(prompt=df["prompt"].str[len(prefix) :])


def check_completion_prefix(df: pd.DataFrame, _: Lengths) -> Finding:
    prefix = pc.completion_prefix(df["completion"])
    answers = df["completion"].map(pc.answer)
    if len(prefix) <= pc.MAX_COMPLETION_PREFIX or (answers == prefix).all():
        return finding("completion_prefix", "ok", f"common prefix of {len(prefix)} characters", prefix)
    return finding(
        "completion_prefix",
        "warning",
        f"every completion starts with {shown(prefix)}: a completion should hold only the output",
        prefix,
        fix=(f"remove {shown(prefix)} from the start of every completion", strip_completion_prefix(prefix)),
    )


def strip_completion_prefix(prefix: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def strip(completion: str) -> str:
        lead = completion[: len(completion) - len(pc.answer(completion))]  # the one leading space stays
        return lead + pc.answer(completion)[len(prefix) :]

    return lambda df: df.assign(completion=df["completion"].map(strip))


def check_empty_completions(df: pd.DataFrame, _: Lengths) -> Finding:
    empty = pc.empty_completions(df["completion"])
    if not empty.any():
        return finding("empty_completions", "ok", "no empty completion", 0)
    n = int(empty.sum())
    return finding(
        "empty_completions",
        "error",
        f"{n} completion(s) empty or only whitespace{where(empty)}: nothing to learn from them",
        n,
        empty,
        fix=(f"remove {n} row(s) with empty completions", lambda d: d[~pc.empty_completions(d["completion"])]),
    )


def check_duplicates(df: pd.DataFrame, _: Lengths) -> Finding:
    dupes = pc.duplicate_pairs(df["prompt"], df["completion"])
    if not dupes.any():
        return finding("duplicate_pairs", "ok", "no duplicated pair", 0)
    n = int(dupes.sum())
    return finding(
        "duplicate_pairs",
        "warning",
        f"{n} prompt/completion pair(s) repeat an earlier one{where(dupes)}",
        n,
        dupes,
        fix=(f"remove {n} duplicate row(s)", lambda d: d[~pc.duplicate_pairs(d["prompt"], d["completion"])]),
    )


def check_separator(df: pd.DataFrame, _: Lengths) -> Finding:
    prompts = df["prompt"]
    if pc.infer_task(prompts, df["completion"]) == "open-ended generation":
        return finding("separator", "ok", "open-ended generation (empty prompts): no separator needed", "")
    if len(prompts) > 1 and (prompts == prompts.iloc[0]).all():
        return finding(
            "separator",
            "error",
            f"all prompts are the same ({shown(prompts.iloc[0])}): leave them empty for open-ended generation, "
            "or give each example its own prompt",
            prompts.iloc[0],
        )
    return common_ending(df, "prompt", "separator", pc.SEPARATORS, ENDINGS["prompt"])


# What each kind of ending is for, in the checks' messages: (name, what it tells, what goes wrong inside).
ENDINGS = {
    "prompt": (
        "separator",
        "tells the model where the prompt ends and the completion begins",
        "the model cannot tell where the prompt ends",
    ),
    "completion": ("stop sequence", "tells generation where to stop", "generation would stop there"),
}


def common_ending(df: pd.DataFrame, column: str, check: str, candidates: Any, words: tuple[str, str, str]) -> Finding:
    """Do all texts of `column` end with one sequence that occurs nowhere else in them? (OpenAI's separator
    check for prompts, its stop-sequence check for completions.) The fix appends one that occurs nowhere."""
    name, purpose, inside_harm = words
    texts = df[column]
    suffix = pc.common_suffix(texts)
    fresh = pc.fresh_ending(texts, candidates)
    fix = (f"append the {name} {shown(fresh)} to every {column}", lambda d: d.assign(**{column: d[column] + fresh}))
    if not suffix:
        message = (
            f"the {column}s do not end with a common {name}, which {purpose}; {shown(fresh)} occurs nowhere in them"
        )
        return finding(check, "warning", message, "", fix=fix)
    inside = pc.ending_inside(texts, [suffix])
    if inside.any():
        message = (
            f"every {column} ends with {shown(suffix)}, but {int(inside.sum())} also contain it before the "
            f"end{where(inside)}: {inside_harm}"
        )
        return finding(check, "warning", message, suffix, inside, fix=fix)
    return finding(check, "ok", f"every {column} ends with the {name} {shown(suffix)}", suffix)


def check_leading_space(df: pd.DataFrame, _: Lengths) -> Finding:
    bare = pc.no_leading_space(df["completion"])
    if not bare.any():
        return finding("leading_space", "ok", "every completion starts with a whitespace", 0)
    n = int(bare.sum())
    return finding(
        "leading_space",
        "warning",
        f"{n} completion(s) do not start with a whitespace{where(bare)}: byte-level BPE (GPT-2) tokenizes "
        '" positive" as one common token, "positive" as others',
        n,
        bare,
        fix=("prepend a space to completions without one", add_leading_space),
    )


def add_leading_space(df: pd.DataFrame) -> pd.DataFrame:
    bare = pc.no_leading_space(df["completion"])
    return df.assign(completion=df["completion"].where(~bare, " " + df["completion"]))


def check_stop(df: pd.DataFrame, _: Lengths) -> Finding:
    completions = df["completion"]
    task = pc.infer_task(df["prompt"], completions)
    if task == "classification":
        return finding("stop_sequence", "ok", "classification: a label needs no stop sequence", "")
    return common_ending(df, "completion", "stop_sequence", pc.STOPS, ENDINGS["completion"])


def check_length(df: pd.DataFrame, lengths: Lengths) -> Finding:
    long = pc.too_long(lengths.measure(df["prompt"], df["completion"]), lengths.limit)
    if not long.any():
        return finding("long_examples", "ok", f"every example within {lengths.limit} {lengths.unit}", 0)
    n = int(long.sum())
    return finding(
        "long_examples",
        "warning",
        f"{n} example(s) longer than {lengths.limit} {lengths.unit}{where(long)}: they would be cut short",
        n,
        long,
        fix=(f"remove {n} long example(s)", drop_long(lengths)),
    )


def drop_long(lengths: Lengths) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df[~pc.too_long(lengths.measure(df["prompt"], df["completion"]), lengths.limit)]


def check_count(df: pd.DataFrame, _: Lengths) -> Finding:
    n = len(df)
    if n == 0:
        return finding("examples", "error", "no prompt/completion pairs left", n)
    if n >= pc.MIN_EXAMPLES:
        return finding("examples", "ok", f"{n} prompt/completion pairs", n)
    return finding(
        "examples",
        "warning",
        f"{n} prompt/completion pairs: a few hundred train better (quality tends to grow with every doubling)",
        n,
    )


def check_task(df: pd.DataFrame, _: Lengths) -> Finding:
    task = pc.infer_task(df["prompt"], df["completion"])
    distinct = df["completion"].nunique()
    if len(df) > 1 and distinct == 1:
        only = shown(df["completion"].iloc[0])
        return finding("task", "error", f"every completion is {only}: the model would learn one answer", task)
    detail = f" ({distinct} distinct completions)" if task == "classification" else ""
    return finding("task", "ok", f"{task}{detail}", task)


CHECKS: list[Callable[[pd.DataFrame, Lengths], Finding]] = [
    check_keys,
    check_extra_fields,
    check_upper_case("prompt"),
    check_upper_case("completion"),
    check_prompt_prefix,
    check_completion_prefix,
    check_empty_completions,
    check_duplicates,
    check_separator,
    check_leading_space,
    check_stop,
    check_length,  # after every fix that adds characters
    check_count,  # after every fix that removes rows
    check_task,
]


def check_all(df: pd.DataFrame, lengths: Lengths) -> list[Finding]:
    """Every check on `df`; the content checks see the keys renamed (a miscased key is reported, not fatal)."""
    keys = check_keys(df, lengths)
    if keys.failed and keys.fix is None:
        return [keys]  # no prompt or completion: nothing else can be measured
    view = keys.fix(df) if keys.fix else df
    return [keys, check_extra_fields(df, lengths)] + [check(view, lengths) for check in CHECKS[2:]]


def fix_all(df: pd.DataFrame, lengths: Lengths, accept: Callable[[PrepCheck], bool]) -> tuple[pd.DataFrame, list[str]]:
    """Apply the fixes, check by check in CHECKS' order, until a round changes nothing (a removal can change
    what the data looks like, e.g. the inferred task). Fixes of errors are necessary; `accept` is asked about
    the recommended ones (warnings), once each."""
    applied: list[str] = []
    declined: set[str] = set()
    for _ in range(4):
        changed = False
        for check in CHECKS:
            found = check(df, lengths)
            if found.record.check == "keys" and found.failed and found.fix is None:
                return df, applied
            if not found.failed or found.fix is None or found.record.check in declined:
                continue
            if found.record.verdict == "error" or accept(found.record):
                df = found.fix(df)
                applied.append(str(found.record.fix))
                changed = True
            else:
                declined.add(found.record.check)
        if not changed:
            break
    return df, applied


# --- the split, the files, the words at the end --------------------------------------------------------------


def valid_size(rows: int) -> int:
    """OpenAI's split: 20% held out for validation, at most 1,000 rows."""
    return min(MAX_VALID, rows - int(rows * 0.8))


def split_pairs(df: pd.DataFrame, task: str, seed: int = SPLIT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pairs split into train and validation (valid_size), seeded; stratified by completion for
    classification where every class has two rows to share."""
    from sklearn.model_selection import train_test_split

    n_valid = valid_size(len(df))
    counts = df["completion"].value_counts()
    stratify = (
        df["completion"]
        if task == "classification"
        and counts.min() >= 2
        and n_valid >= len(counts)
        and len(df) - n_valid >= len(counts)
        else None
    )
    train, valid = train_test_split(df, test_size=n_valid, random_state=seed, stratify=stratify)
    return train.sort_index(), valid.sort_index()


def will_split(df: pd.DataFrame, split: bool | None) -> bool:
    """--split / --no-split, else OpenAI's default: split classification data (accuracy needs held-out rows)."""
    task = pc.infer_task(df["prompt"], df["completion"])
    return (task == "classification" if split is None else split) and len(df) >= 2


def check_split(df: pd.DataFrame, split: bool | None) -> PrepCheck:
    """Not a defect either way: what --fix will write, said beside the checks."""
    if not will_split(df, split):
        why = "--no-split" if split is False else "not classification (--split splits anyway)"
        return PrepCheck(check="split", verdict="ok", message=f"no split: {why}", observed=False, fix=None, lines=[])
    n_valid = valid_size(len(df))
    return PrepCheck(
        check="split",
        verdict="ok",
        message=f"--fix holds out {n_valid} of {len(df)} rows for validation (seed {SPLIT_SEED})",
        observed=True,
        fix=f"write _train ({len(df) - n_valid}) and _valid ({n_valid}) files",
        lines=[],
    )


def to_jsonl(df: pd.DataFrame) -> str:
    return "".join(
        json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n"
        for p, c in zip(df["prompt"], df["completion"], strict=True)
    )


def output_paths(source: Path, out: Path | None) -> dict[str, Path]:
    prepared = out or source.with_name(f"{source.stem}_prepared.jsonl")
    stem = prepared.with_suffix("")
    return {
        "all": prepared,
        "train": stem.with_name(f"{stem.name}_train.jsonl"),
        "valid": stem.with_name(f"{stem.name}_valid.jsonl"),
    }


def reminders(df: pd.DataFrame, task: str, split: tuple[int, int] | None) -> list[str]:
    """What to do at inference with a model trained on this data (OpenAI's tool said the same)."""
    said = []
    separator = pc.common_suffix(df["prompt"]) if task != "open-ended generation" else ""
    if separator:
        said.append(
            f"End every prompt with the separator {shown(separator)} when you call the fine-tuned model, so that "
            "it starts a completion instead of continuing the prompt."
        )
    stop = pc.common_suffix(df["completion"]) if task != "classification" else ""
    if stop:
        said.append(
            f"Pass stop=[{shown(stop)}] when generating (the OpenAI client's stop=, `tuneops predict --stop`), so "
            "that completions end where they ended in training."
        )
    if task == "classification":
        classes = df["completion"].nunique()
        held = f"; {split[1]} rows held out to measure it" if split else ""
        said.append(f"Classification ({classes} classes): score it by exact match of the completion{held}.")
    return said


def table(records: list[PrepCheck]) -> str:
    """check | verdict | observed | fix, one row per check, for the terminal."""

    def cell(value: Any, width: int) -> str:
        text = "-" if value is None else json.dumps(value, ensure_ascii=False)  # strings quoted: "\n" shows
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = [f"{'check':<22} {'verdict':<8} {'observed':<28} fix"]
    for r in records:
        lines.append(f"{r.check:<22} {r.verdict:<8} {cell(r.observed, 28):<28} {r.fix or '-'}")
    return "\n".join(lines)


def messages(records: list[PrepCheck]) -> str:
    return "\n".join(f"- {r.check} ({r.verdict}): {r.message}" for r in records if r.verdict != "ok")


# --- reading the file, and the model's tokens ---------------------------------------------------------------


def read_pairs(path: Path) -> pd.DataFrame:
    """The file's rows, indexed by line (JSONL) or data row (CSV, TSV, Parquet) from 1, with prompt and
    completion (in any casing) as str; bad input is a UserError naming the file and the line."""
    from tuneops.data.sources import read_file

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    df = read_file(path)  # not UTF-8, not JSON, not an object: one line naming file and line
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        text = path.read_bytes().decode("utf-8-sig")
        df.index = pd.Index([n for n, line in enumerate(text.splitlines(), start=1) if line.strip()], name="line")
    else:
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    unit = df.index.name
    for column in df.columns:
        if str(column).lower() in FIELDS:
            bad = df[column].map(lambda v: isinstance(v, (list, dict, tuple)))
            if bad.any():
                at = int(df.index[bad][0])
                kind = type(df[column][at]).__name__
                raise UserError(f"{path}: {unit} {at}: field {column!r} is a {kind}, expected text")
            df[column] = pc.as_text(df[column])
    return df


def char_lengths(limit: int) -> Lengths:
    return Lengths(lambda p, c: pc.char_lengths(p, c), limit, "characters")


def token_lengths(tokenizer: Any, limit: int) -> Lengths:
    """Lengths in the model's own tokens: prompt and completion tokenized apart (as the tokenize stage does,
    to know where the completion starts) plus the eos that ends every example."""
    eos = 1 if tokenizer.eos_token is not None else 0
    known: dict[str, int] = {}  # --fix measures the same texts again after each round: tokenize each once

    def measure(prompts: pd.Series, completions: pd.Series) -> pd.Series:
        def count(texts: pd.Series) -> list[int]:
            new = list(dict.fromkeys(t for t in texts if t not in known))
            if new:
                ids = tokenizer(new, add_special_tokens=False, verbose=False)["input_ids"]
                known.update(zip(new, map(len, ids), strict=True))
            return [known[t] for t in texts]

        return (
            pd.Series(count(prompts), index=prompts.index, dtype="int64")
            + pd.Series(count(completions), index=completions.index, dtype="int64")
            + eos
        )

    return Lengths(measure, limit, "tokens")


def context_length(name: str, revision: str | None, tokenizer: Any) -> int | None:
    """The model's positions (its config), else what its tokenizer says it takes; None when neither says."""
    from tuneops.models.loading import max_positions

    try:
        return max_positions(name, revision)
    except (UserError, TransientError, ValueError):  # a tokenizer-only folder has no config
        said = getattr(tokenizer, "model_max_length", None)
        return int(said) if isinstance(said, int) and 0 < said < 10**6 else None


def model_lengths(model: str | None, max_tokens: int | None, params_path: Path) -> tuple[Lengths, str | None]:
    """How to measure examples: in the tokens of --model, else of params.yaml's model.name. When the default
    model cannot be loaded (the Hub out of reach), characters instead, and a note that says so."""
    from tuneops.config.params import load_params
    from tuneops.models.loading import load_tokenizer

    revision = None
    if model is None:
        try:
            params_model = load_params(params_path).model
        except UserError as exc:
            return fallback(max_tokens, f"no model to count tokens with ({exc})")
        model, revision = params_model.name, params_model.revision
        try:
            tokenizer = load_tokenizer(model, revision)
        except (UserError, TransientError) as exc:
            return fallback(max_tokens, f"params.yaml's model.name {model!r} cannot be loaded ({exc})")
    else:
        try:
            tokenizer = load_tokenizer(model)
        except (UserError, TransientError) as exc:
            raise UserError(f"--model {model}: {exc}; pass --model DIR, a local model or tokenizer folder") from None
    limit = max_tokens or context_length(model, revision, tokenizer)
    if limit is None:
        raise UserError(f"--model {model}: its context length is not in its files; pass --max-tokens N")
    return token_lengths(tokenizer, limit), None


def fallback(max_tokens: int | None, why: str) -> tuple[Lengths, str]:
    limit = CHARS_PER_TOKEN * (max_tokens or 1024)
    note = (
        f"{why}. Counting characters instead ({limit}, ~{CHARS_PER_TOKEN} a token); pass --model DIR (a local "
        "model or tokenizer folder) to count the model's own tokens"
    )
    return char_lengths(limit), note


# --- the command -------------------------------------------------------------------------------------------


def ask(record: PrepCheck) -> bool:
    """Ask a person about a recommended fix, OpenAI's way: Enter accepts."""
    return input(f"- [Recommended] {record.fix} [Y/n]: ").strip().lower() not in ("n", "no")


def prepare_data(
    path: Path,
    raw: pd.DataFrame,
    lengths: Lengths,
    *,
    fix: bool = False,
    out: Path | None = None,
    report_path: Path | None = None,
    split: bool | None = None,
    accept: Callable[[PrepCheck], bool] | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Check the pairs read from `path` (read_pairs), and with `fix` write the fixed pairs; return the exit
    status: 0 when no error-severity check fails on what is left (the file, or what --fix wrote), 1 when one does."""
    found = check_all(raw, lengths)
    records = [f.record for f in found]
    if not (found[0].failed and found[0].fix is None):  # the keys are there (in some casing)
        view = found[0].fix(raw) if found[0].fix else raw
        records.append(check_split(view, split))
    say(f"{path}: {len(raw)} rows; lengths in {lengths.unit} (at most {lengths.limit})\n")
    say(table(records))
    if text := messages(records):
        say("\n" + text)
    final, applied, written, split_sizes = raw, [], [], None
    after: list[PrepCheck] = []
    if fix:
        final, applied = fix_all(raw, lengths, accept or (lambda _: True))
        after = [f.record for f in check_all(final, lengths)]
        if applied:
            say("\nfixes applied:\n" + "\n".join(f"- {a}" for a in applied))
        if not any(r.verdict == "error" for r in after):
            final = final[list(FIELDS)]
            written, split_sizes = write_prepared(final, path, out, split)
            say("\n" + "\n".join(f"wrote {w.path} ({w.rows} rows)" for w in written))
            if remaining := messages(after):
                say("still:\n" + remaining)
    errors = [r for r in (after if fix else records) if r.verdict == "error"]
    task = str(next((r.observed for r in (after or records) if r.check == "task"), "unknown"))
    said = reminders(final, task, split_sizes) if "prompt" in final.columns and not errors else []
    if said:
        say("\n" + "\n".join(said))
    if errors:
        hint = "; nothing written" if fix else "; `--fix` fixes what has a fix"
        say(f"\n{len(errors)} error check(s) failed: {', '.join(r.check for r in errors)}{hint}")
    if report_path is not None:
        write_json(
            report_path,
            PrepareReport(
                file=str(path),
                rows=len(raw),
                task=task,
                length_unit=lengths.unit,
                max_length=lengths.limit,
                checks=records,
                fixes_applied=applied,
                after_fix=after,
                written=written,
                separator=pc.common_suffix(final["prompt"]) if "prompt" in final.columns else "",
                stop=pc.common_suffix(final["completion"]) if "completion" in final.columns else "",
                reminders=said,
            ),
        )
    return 1 if errors else 0


def write_prepared(
    df: pd.DataFrame, source: Path, out: Path | None, split: bool | None
) -> tuple[list[PreparedFile], tuple[int, int] | None]:
    """`<name>_prepared.jsonl`, and its `_train` / `_valid` halves when splitting (by default for
    classification, as OpenAI's tool did)."""
    paths = output_paths(source, out)
    if paths["all"].resolve() == source.resolve():
        raise UserError(f"{source}: --out would overwrite the input; name another file")
    parts = {"all": df}
    if will_split(df, split):
        parts["train"], parts["valid"] = split_pairs(df, pc.infer_task(df["prompt"], df["completion"]))
    for part, frame in parts.items():
        write_text(paths[part], to_jsonl(frame))
    sizes = (len(parts["train"]), len(parts["valid"])) if "train" in parts else None
    return [PreparedFile(path=str(paths[p]), part=p, rows=len(f)) for p, f in parts.items()], sizes
