"""`tuneops predict`'s input and output mistakes are one line each, and leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuneops.config.errors import UserError
from tuneops.config.runner import redact
from tuneops.inference.predict import read_texts, write_predictions
from tuneops.io.files import write_text


def test_a_missing_file_is_one_line_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "predict", "--file", "missing.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: missing.csv: no such file (give --file a CSV/TSV/JSONL/Parquet file with a 'text' column)"
    ]


def test_null_texts_are_named_by_row_not_predicted_as_empty(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["fine", None, "ok", None]))
    with pytest.raises(UserError, match=r"t\.jsonl: column 'text': 2 row\(s\) with no text \(row 2, 4\)"):
        read_texts(path)


def test_out_as_a_folder_is_refused_and_leaves_no_temp_file(tmp_path):
    with pytest.raises(UserError, match="is a folder; give --out a file name"):
        write_predictions(["a"], [{"label": "positive"}], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_atomic_write_leaves_no_temp_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_text(tmp_path / "taken", "x")  # os.replace onto a folder fails
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_credentials_in_a_url_never_reach_an_error_line():
    line = "http://bob:s3cr3t@mlflow.internal:5000 refused; see https://docs.example/a@b"
    assert redact(line) == "http://bob:***@mlflow.internal:5000 refused; see https://docs.example/a@b"
