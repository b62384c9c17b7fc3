"""Each GX check: a good fixture passes it, a bad fixture fails that check (and says so in the report)."""

from __future__ import annotations

import html
import json
import re

import pandas as pd
import pytest

from tasks.ingest import ingest
from tasks.validate import validate
from tests.conftest import LABELS, ROOT, data_params
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.quality.suites import add_plain_index, run_checks

PARAMS = load_params(ROOT / "params.yaml").validate_


def frame(n: int, prefix: str, shares=(1, 1, 1)) -> pd.DataFrame:
    labels = [i for i, share in enumerate(shares) for _ in range(share * n)]
    texts = [f"{prefix} tweet {i} about things" for i in range(len(labels))]
    label_text = pd.array([LABELS[i] for i in labels], dtype="string")
    return pd.DataFrame({"text": pd.array(texts, dtype="string"), "label": labels, "label_text": label_text})


def visible_text(page: str) -> str:
    page = re.sub(r"<script.*?</script>|<[^>]+>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(page))


def good() -> dict[str, pd.DataFrame]:
    return {"train": frame(40, "train"), "validation": frame(10, "val"), "test": frame(10, "test")}


def failed(frames, tmp_path, params=PARAMS) -> set[tuple[str, str]]:
    records = run_checks(frames, params, LABELS, tmp_path / "docs")
    return {(r.check, r.split) for r in records if not r.passed}


def test_clean_data_passes_every_check_and_docs_show_each_expectation(tmp_path):
    assert failed(good(), tmp_path) == set()
    index = (tmp_path / "docs" / "index.html").read_text()
    assert "train" in index and "test_label_shares" in index
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 6  # rows + label shares for each of the three splits
    train_page = visible_text(next(p for p in pages if p.parent.parent.parent.name == "train").read_text())
    # each expectation is rendered with its observed value
    assert "values must not match this regular expression" in train_page
    assert "values must be unique, at least 98 % of the time" in train_page and "0% unexpected" in train_page


def with_text(frames, split, index, text):
    frames[split].loc[index, "text"] = text
    return frames


CASES = {
    "empty text": (lambda f: with_text(f, "train", 3, "   "), ("empty_text_rate", "train")),
    "null text": (lambda f: with_text(f, "test", 0, None), ("no_null_text", "test")),
    "too long": (lambda f: with_text(f, "validation", 1, "x" * 2000), ("text_length", "validation")),
    "duplicates": (
        lambda f: [with_text(f, "train", i, "same old tweet") for i in range(5)][-1],
        ("duplicate_rate", "train"),
    ),
    "leakage": (lambda f: with_text(f, "test", 2, f["train"].loc[7, "text"]), ("leakage_rate", "test")),
    "only urls": (
        lambda f: [with_text(f, "train", i, "@bob http://t.co/x #yes") for i in range(3)][-1],
        ("only_urls_mentions_rate", "train"),
    ),
    "mojibake": (lambda f: with_text(f, "train", 5, "donâ€™t ï¿½ know"), ("mojibake_rate", "train")),
    "control chars": (lambda f: with_text(f, "test", 5, "bell\x07 here"), ("mojibake_rate", "test")),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_text_fails_the_right_check(case, tmp_path):
    spoil, expected = CASES[case]
    assert expected in failed(spoil(good()), tmp_path)


def test_label_balance_checks(tmp_path):
    frames = good()
    frames["train"] = frame(10, "train", shares=(1, 1, 8))  # rarest class 10%, ratio 8
    fails = failed(frames, tmp_path)
    assert {("min_class_share", "train"), ("max_class_ratio", "train"), ("class_share_drift", "test")} <= fails


def test_missing_label_in_a_split(tmp_path):
    frames = good()
    frames["validation"] = frames["validation"][frames["validation"]["label"] != 2].reset_index(drop=True)
    assert ("every_label_present", "validation") in failed(frames, tmp_path)


def test_index_lists_every_validation_without_javascript(tmp_path):
    frames = with_text(good(), "train", 3, "   ")
    records = run_checks(frames, PARAMS, LABELS, tmp_path / "docs")
    add_plain_index(tmp_path / "docs", records)
    index = visible_text((tmp_path / "docs" / "index.html").read_text())
    for name in ("train", "validation", "test", "train_label_shares", "test_label_shares"):
        assert re.search(rf"\b{name} ?: \d+ checks", index)
    assert re.search(r"\btrain ?: 11 checks, failed: empty_text_rate \(warning\)", index)
    assert re.search(r"test_label_shares ?: 3 checks, failed: none", index)


def test_error_check_stops_with_each_failure_and_no_verdict(tmp_path):
    interim = tmp_path / "interim"
    rows = [(f"text {i}", LABELS[i % 3]) for i in range(60)]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    ingest(data_params(path), interim)
    test = pd.read_parquet(interim / "test.parquet")
    train = pd.read_parquet(interim / "train.parquet")
    test.loc[: len(test) // 2, "text"] = train["text"].iloc[: len(test) // 2 + 1].to_numpy()  # heavy leakage
    test.to_parquet(interim / "test.parquet")
    verdict = tmp_path / "verdict.json"
    verdict.write_text('{"passed": true}')  # a stale verdict from an earlier run must not survive
    with pytest.raises(UserError, match=r"leakage_rate on test: observed 0\.\d+, threshold 0\.01.*index\.html"):
        validate(PARAMS, LABELS, interim, tmp_path / "docs", tmp_path / "dq.json", verdict)
    assert not verdict.exists()
    records = json.loads((tmp_path / "dq.json").read_text())
    leak = next(
        r for r in records if r["check"] == "leakage_rate" and r["split"] == "test"
    )  # the file, as people read it
    assert leak["passed"] is False and leak["severity"] == "error" and leak["examples"]
    assert (tmp_path / "docs" / "index.html").is_file()  # the report is there for people to read
