"""Each loader maps its format onto text/label/label_text; each bad input is one clear line, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks.ingest import ingest
from tests.conftest import LABELS, ROOT, data_params
from tuneops.config.errors import UserError
from tuneops.data.sources import load_source, looks_like_path
from tuneops.data.splits import to_canonical

ROWS = [(f"tweet number {i} is {['awful', 'fine', 'great'][i % 3]}", LABELS[i % 3]) for i in range(60)]


def write_csv(path: Path, rows=ROWS, sep: str = ",") -> Path:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, sep=sep, index=False)
    return path


def put(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_csv_file_gets_train_validation_test(tmp_path):
    manifest = ingest(data_params(write_csv(tmp_path / "d.csv")), tmp_path / "out")
    assert {s: m.rows for s, m in manifest.splits.items()} == {"train": 38, "validation": 10, "test": 12}
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert list(train.columns) == ["text", "label", "label_text"]
    assert (train["label_text"] == train["label"].map(LABELS.__getitem__)).all()
    # stratified: every class in every split
    assert all(all(c > 0 for c in m.label_counts.values()) for m in manifest.splits.values())


def test_tsv_parquet_and_label_ids(tmp_path):
    ids = [(text, LABELS.index(label)) for text, label in ROWS]
    write_csv(tmp_path / "d.tsv", ids, sep="\t")
    pd.DataFrame(ids, columns=["text", "label"]).to_parquet(tmp_path / "d.parquet")
    for name in ("d.tsv", "d.parquet"):
        frame, origin = load_source(str(tmp_path / name), None)["train"]
        canon = to_canonical(frame, origin, data_params(tmp_path / name))
        assert canon["label"].tolist() == [LABELS.index(label) for _, label in ROWS]


def test_directory_of_splits_keeps_the_source_test_split(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS[:45])
    write_csv(tmp_path / "test.csv", ROWS[45:])
    manifest = ingest(data_params(tmp_path), tmp_path / "out")
    assert manifest.splits["test"].rows == 15
    assert manifest.splits["train"].rows + manifest.splits["validation"].rows == 45


def test_openai_prompt_completion_jsonl(tmp_path):
    records = [{"prompt": f"{t}\n", "completion": f" {label}"} for t, label in ROWS]
    frame, origin = load_source(str(write_jsonl(tmp_path / "ft.jsonl", records)), None)["train"]
    canon = to_canonical(frame, origin, data_params(tmp_path / "ft.jsonl"))
    assert canon["text"].iloc[0] == ROWS[0][0]
    assert canon["label_text"].tolist() == [label for _, label in ROWS]


def test_hub_ids_and_paths_are_told_apart():
    assert not looks_like_path("mteb/tweet_sentiment_extraction")
    assert not looks_like_path("imdb")
    assert looks_like_path("data/raw/tweets") and looks_like_path("tweets.csv") and looks_like_path("./x")


BAD = {
    "missing path": (lambda d: d / "nope.csv", r"nope\.csv: no such file"),
    "empty file": (lambda d: put(d / "e.csv", ""), r"e\.csv: the file is empty"),
    "header only": (lambda d: put(d / "h.csv", "text,label\n"), r"h\.csv: has a header .* no data rows"),
    "unbalanced quote": (
        lambda d: put(d / "q.csv", 'text,label\nfine,positive\n"broken,negative\nok,neutral\n'),
        r"q\.csv: line 3: unbalanced quote",
    ),
    "broken jsonl line": (
        lambda d: put(d / "b.jsonl", '{"text": "a", "label": "positive"}\n{"text": "b", "label": \n'),
        r"b\.jsonl: line 2: not valid JSON",
    ),
    "missing column": (
        lambda d: put(d / "c.csv", "tweet,label\na,positive\n"),
        r"c\.csv: column 'text' not found \(columns: tweet, label\); set data\.text_column",
    ),
    "unknown labels": (
        lambda d: write_csv(d / "l.csv", [("a", "positive"), ("b", "meh"), ("c", "angry")]),
        r"l\.csv: column 'label': 2 label\(s\) outside .*row 2: 'meh', row 3: 'angry'",
    ),
    "not utf-8": (
        lambda d: put(d / "u.csv", b"text,label\nok,positive\ncaf\xe9,neutral\n"),
        r"u\.csv: line 3: bytes that are not UTF-8",
    ),
    "unknown format": (lambda d: put(d / "d.xlsx", "x"), r"d\.xlsx: unknown format '\.xlsx'"),
    "corrupt parquet": (lambda d: put(d / "p.parquet", b"not parquet"), r"p\.parquet: not a readable Parquet"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_clear_line_and_writes_nothing(case, tmp_path):
    make, pattern = BAD[case]
    source = make(tmp_path)
    with pytest.raises(UserError, match=pattern) as info:
        ingest(data_params(source), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_data_mistake_without_traceback_and_keeps_no_output(tmp_path):
    bad = tmp_path / "q.csv"
    bad.write_text('text,label\n"open,positive\n')
    params = (ROOT / "params.yaml").read_text().replace("source: mteb/tweet_sentiment_extraction", f"source: {bad}")
    (tmp_path / "params.yaml").write_text(params)
    result = subprocess.run(
        [sys.executable, "-m", "tasks.ingest", "--params", "params.yaml", "--out-dir", "data/interim"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 2
    expected = f'error: {bad}: line 2: unbalanced quote (a field opens " and never closes)'
    assert result.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "interim").exists()


def test_a_max_length_beyond_the_models_positions_stops_tokenize_naming_both(sample, tmp_path):
    from tasks.tokenize import tokenize
    from tuneops.config.params import load_params
    from tuneops.config.records import DataVerdict
    from tuneops.io.files import write_json

    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(
        update={
            "model": params.model.model_copy(update={"name": str(sample.model_dir)}),
            "tokenize": params.tokenize.model_copy(update={"max_length": 4096}),
        }
    )
    verdict = tmp_path / "verdict.json"
    write_json(verdict, DataVerdict(passed=True, manifest_sha256="x"))
    with pytest.raises(UserError, match=r"tokenize\.max_length 4096 > the 256 positions of model"):
        tokenize(params, tmp_path / "interim", verdict, tmp_path / "processed", tmp_path / "t.json")
    assert not (tmp_path / "processed").exists()


def test_carved_splits_keep_every_copy_of_a_text_on_one_side(tmp_path):
    """Retweets repeat texts: the pipeline's own carve must not put a copy in train and another in test."""
    from tuneops.data.splits import text_key

    rows = [(f"tweet {i} about {LABELS[i % 3]} things", LABELS[i % 3]) for i in range(90)]
    copies = [(text.upper() + "  ", label) for text, label in rows[:30]] + [(t, lab) for t, lab in rows[:30]]
    manifest = ingest(data_params(write_csv(tmp_path / "d.csv", rows + copies)), tmp_path / "out")
    keys = {s: set(text_key(pd.read_parquet(tmp_path / "out" / f"{s}.parquet")["text"])) for s in manifest.splits}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    assert sum(m.rows for m in manifest.splits.values()) == 150  # nothing dropped, copies kept together
