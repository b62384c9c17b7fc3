"""prepare-data's checks one by one: data that passes, data that fails, and the fix making it pass."""

from __future__ import annotations

import pandas as pd
import pytest

from tuneops.quality import measures as pc
from tuneops.quality import prepare as pr

CHARS = pr.char_lengths(200)


def pairs(prompts: list[str], completions: list[str], **extra: list) -> pd.DataFrame:
    """Pairs as read_pairs gives them: indexed by line from 1."""
    df = pd.DataFrame({"prompt": prompts, "completion": completions, **extra})
    df.index = range(1, len(df) + 1)
    return df


def good(n: int = 120) -> pd.DataFrame:
    """Clean conditional-generation data: separator, leading space, stop sequence, distinct pairs."""
    return pairs(
        [f"tweet {i} about item {i * 7}\n\n###\n\n" for i in range(n)], [f" {i} words and {i * 3}\n" for i in range(n)]
    )


def labelled(n: int = 120) -> pd.DataFrame:
    """Clean classification data: three labels as completions."""
    labels = [" negative", " neutral", " positive"]
    return pairs([f"tweet number {i} ->" for i in range(n)], [labels[i % 3] for i in range(n)])


def spoil(df: pd.DataFrame, column: str, rows: dict[int, str]) -> pd.DataFrame:
    df = df.copy()
    for row, value in rows.items():
        df.loc[row, column] = value
    return df


def with_column(df: pd.DataFrame, column: str, values: pd.Series) -> pd.DataFrame:
    return df.assign(**{column: values})


# check, data that passes, data that fails it (every one has a fix)
CASES = {
    "keys": (pr.check_keys, good(), good().rename(columns={"prompt": "Prompt", "completion": "COMPLETION"})),
    "extra_fields": (pr.check_extra_fields, good(), good().assign(id=range(120), source="x")),
    "prompt_upper_case": (
        pr.check_upper_case("prompt"),
        good(),
        with_column(good(), "prompt", good()["prompt"].str.upper()),
    ),
    "completion_upper_case": (
        pr.check_upper_case("completion"),
        good(),
        with_column(good(), "completion", good()["completion"].str.upper()),
    ),
    "prompt_prefix": (
        pr.check_prompt_prefix,
        good(),
        with_column(good(), "prompt", "Extract the words that carry the sentiment: " + good()["prompt"]),
    ),
    "completion_prefix": (
        pr.check_completion_prefix,
        good(),
        with_column(good(), "completion", " The answer: " + good()["completion"].str[1:]),
    ),
    "empty_completions": (pr.check_empty_completions, good(), spoil(good(), "completion", {3: "", 9: "  \n"})),
    "duplicate_pairs": (pr.check_duplicates, good(), pd.concat([good(), good().iloc[:3]]).set_axis(range(1, 124))),
    "separator": (
        pr.check_separator,
        good(),
        with_column(good(), "prompt", good()["prompt"].str.removesuffix("\n\n###\n\n")),
    ),
    "leading_space": (pr.check_leading_space, good(), with_column(good(), "completion", good()["completion"].str[1:])),
    "stop_sequence": (pr.check_stop, good(), with_column(good(), "completion", good()["completion"].str[:-1])),
    "long_examples": (pr.check_length, good(), spoil(good(), "completion", {5: " " + "x" * 300 + "\n"})),
}


@pytest.mark.parametrize("name", CASES)
def test_each_check_passes_good_data_fails_bad_data_and_its_fix_fixes_it(name):
    check, passing, failing = CASES[name]
    assert check(passing, CHARS).record.verdict == "ok"
    found = check(failing, CHARS)
    assert found.record.check == name and found.record.verdict != "ok" and found.fix is not None
    fixed = found.fix(failing)
    assert check(fixed, CHARS).record.verdict == "ok"


@pytest.mark.parametrize("name", ["empty_completions", "duplicate_pairs", "long_examples"])
def test_row_checks_name_the_offending_lines_and_their_fix_removes_only_those(name):
    check, _, failing = CASES[name]
    found = check(failing, CHARS)
    assert found.record.lines
    fixed = found.fix(failing)
    assert set(failing.index) - set(fixed.index) == set(found.record.lines)


def test_missing_key_is_an_error_nothing_can_fix_and_stops_the_other_checks():
    df = good().drop(columns=["completion"]).assign(answer="x")
    found = pr.check_all(df, CHARS)
    assert [f.record.check for f in found] == ["keys"]
    assert found[0].record.verdict == "error" and found[0].fix is None
    assert "'completion'" in found[0].record.message


def test_miscased_keys_are_reported_and_the_other_checks_still_run():
    df = good().rename(columns={"prompt": "Prompt"})
    found = {f.record.check: f.record for f in pr.check_all(df, CHARS)}
    assert found["keys"].verdict == "error" and found["keys"].fix
    assert found["extra_fields"].verdict == "ok"  # `Prompt` is the prompt, not an extra field
    assert found["separator"].verdict == "ok"


def test_all_prompts_the_same_is_an_error_without_a_fix():
    df = pairs(["same prompt ->"] * 4, [" a\n", " b\n", " c\n", " d\n"])
    found = pr.check_separator(df, CHARS)
    assert found.record.verdict == "error" and found.fix is None


def test_a_separator_that_also_occurs_inside_prompts_is_replaced_by_one_that_occurs_nowhere():
    df = pairs(["one ->", "two -> three ->", "four ->", "five six ->"], [" a\n", " b\n", " c\n", " d\n"])
    found = pr.check_separator(df, CHARS)
    assert found.record.verdict == "warning" and found.record.lines == [2]
    fixed = found.fix(df)
    assert pr.check_separator(fixed, CHARS).record.verdict == "ok"


def test_suggested_endings_never_occur_in_the_data():
    prompts = pd.Series(["a\n\n###\n\nb", "c ->"])
    assert pc.fresh_ending(prompts, pc.SEPARATORS) == "\n\n===\n\n"  # not ### (inside), not -> (multi-line data)
    one_line = pd.Series(["a b", "c d"])
    assert pc.fresh_ending(one_line, [" ->"]) == " ->"
    everything = pd.Series(["".join(pc.STOPS)])
    fresh = pc.fresh_ending(everything, pc.STOPS)
    assert fresh and fresh not in everything.iloc[0]


def test_a_stop_sequence_inside_a_completion_would_cut_generation_short():
    df = spoil(good(), "completion", {4: " first line\nsecond line\n"})
    found = pr.check_stop(df, CHARS)
    assert found.record.verdict == "warning" and found.record.lines == [4]
    assert pr.check_stop(found.fix(df), CHARS).record.verdict == "ok"


def test_classification_needs_no_stop_sequence():
    assert pr.check_stop(labelled(), CHARS).record.verdict == "ok"
    assert pr.check_stop(with_column(good(), "completion", good()["completion"].str[:-1]), CHARS).failed


@pytest.mark.parametrize(
    ("prompts", "completions", "task"),
    [
        (["", "", ""], [" a", " b", " c"], "open-ended generation"),
        ([f"p{i}" for i in range(9)], [" yes", " no"] * 4 + [" yes"], "classification"),
        ([f"p{i}" for i in range(9)], [f" c{i}" for i in range(9)], "conditional generation"),
    ],
)
def test_the_task_is_inferred_as_openai_did(prompts, completions, task):
    df = pairs(prompts, completions)
    assert pc.infer_task(df["prompt"], df["completion"]) == task
    assert pr.check_task(df, CHARS).record.observed == task


def test_one_completion_for_every_prompt_is_an_error():
    df = pairs(["a ->", "b ->", "c ->"], [" same"] * 3)
    assert pr.check_task(df, CHARS).record.verdict == "error"


def test_fewer_than_100_examples_warn_without_a_fix_and_none_is_an_error():
    assert pr.check_count(good(100), CHARS).record.verdict == "ok"
    found = pr.check_count(good(99), CHARS)
    assert found.record.verdict == "warning" and found.fix is None
    all_empty = pairs(["a ->", "b ->"], ["", " "])
    fixed, _ = pr.fix_all(all_empty, CHARS, lambda _: True)
    assert pr.check_count(fixed, CHARS).record.verdict == "error"


def test_a_completion_prefix_goes_but_the_leading_space_stays():
    df = with_column(good(), "completion", " The answer: " + good()["completion"].str[1:])
    fixed = pr.check_completion_prefix(df, CHARS).fix(df)
    assert list(fixed["completion"]) == list(good()["completion"])


def test_lengths_are_counted_in_the_models_own_tokens(tokenizer):
    df = pairs(["a tweet about the concert tonight\n\n###\n\n"], [" the concert tonight\n"])
    expected = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in df.iloc[0]) + 1  # + eos
    assert expected != len(df.iloc[0]["prompt"] + df.iloc[0]["completion"])  # tokens, not characters
    assert pr.check_length(df, pr.token_lengths(tokenizer, expected)).record.verdict == "ok"
    found = pr.check_length(df, pr.token_lengths(tokenizer, expected - 1))
    assert found.record.verdict == "warning" and "tokens" in found.record.message
    assert found.fix(df).empty


def messy(n: int = 150) -> pd.DataFrame:
    """Everything wrong at once: casing, extra field, shouting, an instruction prefix, no separator, no leading
    space, no stop, an empty completion, duplicates, one very long example."""
    df = pairs(
        [f"Please extract the span. TWEET {i}: ITEM {i * 3}" for i in range(n)],
        [f"WORDS {i}" for i in range(n)],
        id=list(range(n)),
    ).rename(columns={"prompt": "Prompt"})
    df.loc[7, "completion"] = ""
    df.loc[9, "completion"] = "x" * 500
    return pd.concat([df, df.iloc[:4]]).set_axis(range(1, n + 5))


def test_fix_all_leaves_nothing_to_fix_and_fixing_again_changes_nothing():
    fixed, applied = pr.fix_all(messy(), CHARS, lambda _: True)
    assert len(applied) >= 10
    after = {f.record.check: f.record.verdict for f in pr.check_all(fixed, CHARS)}
    assert set(after.values()) == {"ok"}, after
    again, applied_again = pr.fix_all(fixed, CHARS, lambda _: True)
    assert applied_again == [] and again.equals(fixed)


def test_declined_recommendations_stay_undone_and_necessary_fixes_are_applied_anyway():
    asked = []

    def decline(record):
        asked.append(record.check)
        return False

    fixed, applied = pr.fix_all(messy(), CHARS, decline)
    assert "empty_completions" not in asked and not pc.empty_completions(fixed["completion"]).any()
    assert "prompt" in fixed.columns  # renaming a miscased key is necessary too
    assert len(asked) == len(set(asked))  # each recommendation asked once
    assert pr.check_separator(fixed, CHARS).failed  # declined: still failing


def test_classification_split_is_seeded_stratified_and_a_fifth():
    df = labelled(150)
    train, valid = pr.split_pairs(df, "classification")
    assert len(valid) == 30 and len(train) == 120 and not set(train.index) & set(valid.index)
    assert valid["completion"].value_counts().to_dict() == {" negative": 10, " neutral": 10, " positive": 10}
    again, _ = pr.split_pairs(df, "classification")
    assert list(again.index) == list(train.index)


def test_the_split_holds_out_at_most_1000_rows():
    _, valid = pr.split_pairs(good(6000), "conditional generation")
    assert len(valid) == pr.MAX_VALID


def test_reminders_name_the_separator_and_the_stop():
    said = " ".join(pr.reminders(good(), "conditional generation", None))
    assert r'"\n\n###\n\n"' in said and r'stop=["\n"]' in said
    said = " ".join(pr.reminders(labelled(), "classification", (96, 24)))
    assert '" ->"' in said and "stop=" not in said and "24 rows" in said


def test_open_ended_generation_needs_no_separator_but_a_stop_sequence():
    df = pairs([""] * 4, [" once upon a time", " the end came", " a dark night", " it rained"])
    assert pr.check_separator(df, CHARS).record.verdict == "ok"
    stop = pr.check_stop(df, CHARS)
    assert stop.failed and pr.check_stop(stop.fix(df), CHARS).record.verdict == "ok"
