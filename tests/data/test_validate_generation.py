"""validate on generation data: prepare-data's checks as Great Expectations expectations, thresholds from params,
into the same records, Data Docs, review page and verdict as classification."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tasks.validate import validate
from tests.conftest import LABELS, ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.data.splits import text_key
from tuneops.quality.generation_suites import pair_columns, pair_endings, run_generation_checks

PARAMS = load_params(ROOT / "params.yaml").validate_
STOP = ["\n"]


def pairs(n: int, prefix: str) -> pd.DataFrame:
    """Clean span-extraction pairs, as ingest writes them for task: generation."""
    texts = [f"{prefix} tweet {i} about the show at {i * 7}" for i in range(n)]
    return pd.DataFrame(
        {
            "prompt": [f"{t}\nsentiment: {LABELS[i % 3]}\n\n###\n\n" for i, t in enumerate(texts)],
            "completion": [f" {i * 7} at the show\n" for i in range(n)],
            "source_text": texts,
        }
    )


def good() -> dict[str, pd.DataFrame]:
    return {"train": pairs(120, "train"), "validation": pairs(20, "val"), "test": pairs(20, "test")}


def failed(records) -> set[tuple[str, str]]:
    return {(r.check, r.split) for r in records if not r.passed}


def test_row_checks_mark_exactly_the_offending_rows():
    frames = good()
    task, separator, stops = pair_endings(frames["train"], STOP)
    assert (task, separator, stops) == ("conditional generation", "\n\n###\n\n", STOP)
    test = frames["test"].copy()
    test.loc[2, "prompt"] = frames["train"].loc[5, "prompt"]  # leaked from train
    test.loc[3, "completion"] = "no space, and a stop\ninside\n"
    test.loc[4, "prompt"] = "no separator"
    train_prompts = set(text_key(frames["train"]["prompt"]))
    columns = pair_columns(test, train_prompts, task, separator, stops, PARAMS.generation)
    offending = {
        c: list(columns.index[columns[c].notna()]) for c in ("leaked_prompt", "no_leading_space", "stop_inside")
    }
    assert offending == {"leaked_prompt": [2], "no_leading_space": [3], "stop_inside": [3]}
    assert list(columns.index[columns["missing_separator"].notna()]) == [4]


def test_clean_pairs_pass_and_each_spoiled_one_fails_its_check_with_examples(tmp_path):
    assert failed(run_generation_checks(good(), PARAMS, tmp_path / "clean", STOP)) == set()

    frames = good()
    train, val, test = frames["train"], frames["validation"], frames["test"]
    train.loc[3, "completion"] = " \n"  # empty
    train.loc[[10, 11, 12], ["prompt", "completion"]] = train.loc[9, ["prompt", "completion"]].to_numpy()  # 3 dupes
    train.loc[4, "completion"] = " " + "x" * 3000 + "\n"  # too long
    train.loc[6, "completion"] = "no leading space\n"
    val.loc[1, "prompt"] = "a prompt without the separator"
    val.loc[2, "completion"] = " a stop\ninside\n"
    val.loc[3, "completion"] = " runs on without a stop"
    val.loc[5, "prompt"] = train.loc[20, "prompt"]  # 5% of validation leaked
    test["prompt"] = "ANSWER THE QUESTION ABOUT THIS TWEET: " + test["prompt"].str.upper()
    records = run_generation_checks(frames, PARAMS, tmp_path / "spoiled", STOP)
    assert failed(records) == {
        ("empty_completion_rate", "train"),
        ("duplicate_pair_rate", "train"),
        ("long_example_rate", "train"),
        ("no_leading_space_rate", "train"),
        ("missing_separator_rate", "validation"),
        ("stop_inside_rate", "validation"),
        ("missing_stop_rate", "validation"),
        ("leakage_rate", "validation"),
        ("prompt_prefix_chars", "test"),
        ("prompt_upper_share", "test"),
    }
    by_check = {(r.check, r.split): r for r in records}
    assert by_check[("missing_stop_rate", "validation")].examples == [" runs on without a stop"]
    assert by_check[("prompt_prefix_chars", "test")].examples[0].startswith("ANSWER THE QUESTION ABOUT THIS TWEET: ")
    assert by_check[("leakage_rate", "validation")].severity == "error"
    assert (tmp_path / "spoiled" / "index.html").is_file()


def write_interim(interim, frames) -> None:
    interim.mkdir()
    for split, df in frames.items():
        df.to_parquet(interim / f"{split}.parquet", index=False)
    (interim / "manifest.json").write_text("{}")


def test_validate_stage_on_generation_data_writes_records_review_page_and_verdict(tmp_path):
    interim = tmp_path / "interim"
    frames = good()
    frames["train"].loc[6, "completion"] = "no leading space\n"  # a warning: reported, passes
    write_interim(interim, frames)
    paths = dict(docs_dir=tmp_path / "docs", report_path=tmp_path / "dq.json", verdict_path=tmp_path / "verdict.json")
    records = validate(PARAMS, LABELS, interim, **paths, task="generation", stop=STOP)
    assert failed(records) == {("no_leading_space_rate", "train")}
    assert json.loads((tmp_path / "verdict.json").read_text())["passed"] is True
    page = (tmp_path / "data_review.html").read_text()
    assert "no_leading_space_rate" in page and "no leading space" in page and "Label shares" not in page


def test_validate_stops_on_a_failed_error_check_of_generation_data(tmp_path):
    interim = tmp_path / "interim"
    frames = good()
    frames["test"]["prompt"] = frames["train"]["prompt"].iloc[:20].to_numpy()  # test is train again
    write_interim(interim, frames)
    verdict = tmp_path / "verdict.json"
    with pytest.raises(UserError, match=r"leakage_rate on test: observed 1\.0"):
        validate(
            PARAMS, LABELS, interim, tmp_path / "docs", tmp_path / "dq.json", verdict, task="generation", stop=STOP
        )
    assert not verdict.exists() and (tmp_path / "data_review.html").is_file()
