"""The review page: every check with its mark, the failed checks' example rows, readable offline in Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.ingest import ingest
from tasks.validate import validate
from tests.conftest import LABELS, ROOT, data_params
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.config.records import QualityRecord
from tuneops.quality.review_page import render, shares_by_split

PARAMS = load_params(ROOT / "params.yaml").validate_
SHARES = {
    "train": {"negative": 0.31, "neutral": 0.40, "positive": 0.29},
    "test": {"negative": 0.10, "neutral": 0.45, "positive": 0.45},
}
DOCS = "data_quality/index.html"


def record(
    check: str, split: str, severity: str, passed: bool, examples: tuple[str, ...] = (), **kw: Any
) -> QualityRecord:
    values = {"observed": 0.0, "threshold": 0.0, "suite": split, **kw}
    return QualityRecord(check=check, split=split, severity=severity, passed=passed, examples=list(examples), **values)


def records() -> list[QualityRecord]:
    """One failed error check (leakage), failed warnings (empty text, mojibake), and passes."""
    return [
        record("no_null_text", "train", "error", True),
        record("empty_text_rate", "train", "warning", False, ["   "], observed=0.0004),
        record("mojibake_rate", "train", "warning", False, ["donâ€™t ï¿½ know", "bell\x07 here"], observed=0.0057),
        record("min_class_share", "train", "error", True, observed=0.29, threshold=0.15, suite="train_label_shares"),
        record("leakage_rate", "test", "error", False, ["<script>alert(1)</script> seen in train"], observed=0.25),
        record("min_class_share", "test", "error", False, observed=0.1, threshold=0.15, suite="test_label_shares"),
        record("every_label_present", "test", "error", True, observed={"missing": []}, threshold=[0, 1, 2]),
    ]


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style|svg).*?</\1>|<[^>]+>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(page)).strip()


def rows(page: str) -> dict[str, str]:
    """Each check row's visible text with its failed-check examples, by row id (split-check)."""
    found = re.findall(r'<tr class="check [^"]*" id="([^"]+)">(.*?)(?=<tr class="check|</tbody>)', page, flags=re.S)
    return {row_id: visible_text(body) for row_id, body in found}


def test_render_shows_every_record_with_its_mark_and_escapes_texts() -> None:
    page = render(records(), SHARES, DOCS)
    shown = rows(page)
    assert len(shown) == len(records())
    assert shown["test-leakage_rate"].startswith("✗ FAIL leakage_rate error 0.25")
    assert "<script>alert(1)</script> seen in train" in shown["test-leakage_rate"]  # shown as text, not run
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert shown["train-empty_text_rate"].startswith("⚠ WARN") and "(blank: 3 chars)" in shown["train-empty_text_rate"]
    assert "bell<mark>\\x07</mark> here" in page  # an invisible control character, made visible and flagged
    assert shown["train-no_null_text"] == "✓ PASS no_null_text error 0 0"
    assert "No example rows" in shown["test-min_class_share"]
    assert '<a href="#test-leakage_rate">✗ FAIL leakage_rate on test</a>' in page  # listed under the verdict
    assert "✗ FAIL: 3 error check(s) failed" not in page and "✗ FAIL: 2 error check(s) failed" in page


def test_render_needs_nothing_from_the_network() -> None:
    page = render(records(), SHARES, DOCS)
    assert not re.search(r"<link|<script|<img|@import|url\(", page)
    external = [u for u in re.findall(r'(?:href|src)="([^"]*)"', page) if not u.startswith("#")]
    assert external == [DOCS]  # GX's Data Docs, relative to the page


def test_label_shares_chart_per_split_marks_a_share_below_the_floor() -> None:
    page = render(records(), SHARES, DOCS)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(charts) == 2
    assert "10.0% below min" in charts[1] and "min 15%" in charts[1] and "below min" not in charts[0]


def test_shares_by_split_are_the_checked_shares() -> None:
    frames = {
        "train": pd.DataFrame({"label": [0, 1, 2, 2]}),
        "test": pd.DataFrame({"label": [1, 1]}),
    }
    assert shares_by_split(frames, LABELS) == {
        "train": {"negative": 0.25, "neutral": 0.25, "positive": 0.5},
        "test": {"negative": 0.0, "neutral": 1.0, "positive": 0.0},
    }


def test_validate_writes_the_page_when_an_error_check_fails(tmp_path: Path) -> None:
    interim = tmp_path / "interim"
    path = tmp_path / "d.csv"
    pd.DataFrame([(f"text {i}", LABELS[i % 3]) for i in range(60)], columns=["text", "label"]).to_csv(path, index=False)
    ingest(data_params(path), interim)
    test, train = pd.read_parquet(interim / "test.parquet"), pd.read_parquet(interim / "train.parquet")
    test.loc[:3, "text"] = train["text"].iloc[:4].to_numpy()  # leakage: an error check
    test.to_parquet(interim / "test.parquet")
    with pytest.raises(UserError, match=r"data_review\.html"):
        validate(PARAMS, LABELS, interim, tmp_path / "docs", tmp_path / "dq.json", tmp_path / "verdict.json")
    page = (tmp_path / "data_review.html").read_text()
    assert rows(page)["test-leakage_rate"].startswith("✗ FAIL") and train["text"].iloc[0] in page
    assert 'href="docs/index.html"' in page


def chromium_dom(page: Path, profile: Path) -> str:
    """The page as headless Chromium renders it, with every network request bound to fail."""
    command = [
        shutil.which("chromium") or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves
        "--proxy-server=127.0.0.1:9",  # and nothing gets out through a proxy (port 9: discard, closed)
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(not shutil.which("chromium"), reason="no `chromium` on PATH (Debian: apt-get install chromium)")
def test_chromium_offline_shows_the_failed_check_as_failed(tmp_path: Path) -> None:
    page = tmp_path / "data_review.html"
    page.write_text(render(records(), SHARES, DOCS), encoding="utf-8")
    dom = chromium_dom(page, tmp_path / "profile")
    shown = rows(dom)
    assert shown["test-leakage_rate"].startswith("✗ FAIL leakage_rate error")
    assert "<script>alert(1)</script> seen in train" in shown["test-leakage_rate"]
    assert shown["train-mojibake_rate"].startswith("⚠ WARN") and "donâ€™t ï¿½ know" in shown["train-mojibake_rate"]
    assert shown["train-no_null_text"].startswith("✓ PASS")
    assert "✗ FAIL: 2 error check(s) failed" in visible_text(dom)
    assert re.search(r"✗ FAIL leakage_rate on test ?: observed 0\.25", visible_text(dom))  # under the verdict
