"""`tuneops prepare-data`: check a prompt/completion file the way OpenAI's `fine_tunes.prepare_data` did, and fix it.

Each row of its table is a Finding: a verdict (ok / warning / error), a message, what was observed, and where
it has one a fix (a function from pairs to pairs). Two are about the file's shape (its keys, other fields) and
live here; the rest are the registry's (tuneops/quality/checks.py), which validate runs on generation data too.
`--fix` applies the fixes in CHECKS' order, in which none undoes another, and checks again until nothing
changes, so the file it writes passes every check. Reading the file and counting tokens: reading.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import JsonValue

from tuneops.config.errors import UserError
from tuneops.config.records import PreparedFile, PrepareReport, PrepCheck, Verdict
from tuneops.io.files import write_json, write_text
from tuneops.quality import checks as registry
from tuneops.quality import measures as pc
from tuneops.quality.kinds import Fix, Pairs, Report, RowCheck, SplitCheck, shown
from tuneops.quality.measures import Lengths
from tuneops.quality.reading import FIELDS, char_lengths, model_lengths, read_pairs, token_lengths

__all__ = ["ask", "char_lengths", "check_all", "model_lengths", "prepare_data", "read_pairs", "token_lengths"]

MAX_LINES = 20  # offending lines kept in a record: enough to find them, not the whole file again
MAX_VALID = 1000  # OpenAI's cap on the validation half of a split
SPLIT_SEED = 42


@dataclass(frozen=True)
class Finding:
    record: PrepCheck
    fix: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    @property
    def failed(self) -> bool:
        return self.record.verdict != "ok"


CheckFn = Callable[[pd.DataFrame, Lengths], Finding]


def finding(
    check: str,
    verdict: Verdict,
    message: str,
    observed: JsonValue = None,
    offenders: pd.Series | None = None,
    fix: Fix | None = None,
) -> Finding:
    lines = [int(i) for i in offenders.index[offenders][:MAX_LINES]] if offenders is not None else []
    record = PrepCheck(
        check=check, verdict=verdict, message=message, observed=observed, fix=fix[0] if fix else None, lines=lines
    )
    return Finding(record, fix[1] if fix else None)


# --- the file's shape ------------------------------------------------------------------------------------


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


# --- the registry's checks, one row each of its reports ---------------------------------------------------


def failure(check: RowCheck | SplitCheck, report: Report, p: Pairs) -> Finding | None:
    """`check` crossing OpenAI's limit on the pairs, or None."""
    if isinstance(check, RowCheck):
        offenders = check.offends(p)
        if not (check.whole_file(p) if check.whole_file else offenders.any()):
            return None
        observed = check.observed(p) if check.observed else int(offenders.sum())
        fix = check.fix(p, offenders) if check.fix else None
        lines = None if check.whole_file else offenders
        return finding(report.name, check.verdict, check.says(p, offenders), observed, lines, fix)
    value = check.value(p)
    if check.passes(value) or check.excused(p):
        return None
    observed = (check.observed or report.observed)(p)
    return finding(
        report.name, check.verdict, check.says(p, value), observed, fix=check.fix(p, value) if check.fix else None
    )


def report_finding(report: Report, df: pd.DataFrame, lengths: Lengths) -> Finding:
    """The report's row: the first of its checks that fails (in CHECKS' order), else ok."""
    p = Pairs.of_file(df, lengths)
    checks = [c for c in registry.CHECKS if c.report is report]
    if not any(c.applies(p.task) for c in checks):
        return finding(report.name, "ok", report.skipped, "")
    for check in checks:
        if (found := failure(check, report, p)) is not None:
            return found
    return finding(report.name, "ok", report.ok(p), report.observed(p))


def check_of(name: str) -> CheckFn:
    """The check behind prepare-data's row `name`."""
    report = next(r for r in REPORTS if r.name == name)
    return lambda df, lengths: report_finding(report, df, lengths)


REPORTS = list(dict.fromkeys(c.report for c in registry.CHECKS if c.report is not None))
CHECKS: list[CheckFn] = [check_keys, check_extra_fields, *(check_of(r.name) for r in REPORTS)]


def check_upper_case(field: str) -> CheckFn:
    return check_of(f"{field}_upper_case")


# Named for those who call one check alone (tests): adding a check needs none of these.
check_prompt_prefix = check_of("prompt_prefix")
check_completion_prefix = check_of("completion_prefix")
check_empty_completions = check_of("empty_completions")
check_duplicates = check_of("duplicate_pairs")
check_separator = check_of("separator")
check_leading_space = check_of("leading_space")
check_stop = check_of("stop_sequence")
check_length = check_of("long_examples")
check_count = check_of("examples")
check_task = check_of("task")


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

    def cell(value: object, width: int) -> str:
        text = "-" if value is None else json.dumps(value, ensure_ascii=False)  # strings quoted: "\n" shows
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = [f"{'check':<22} {'verdict':<8} {'observed':<28} fix"]
    for r in records:
        lines.append(f"{r.check:<22} {r.verdict:<8} {cell(r.observed, 28):<28} {r.fix or '-'}")
    return "\n".join(lines)


def messages(records: list[PrepCheck]) -> str:
    return "\n".join(f"- {r.check} ({r.verdict}): {r.message}" for r in records if r.verdict != "ok")


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
