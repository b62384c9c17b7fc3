"""`tuneops prepare-data` end to end on small files: the table, the JSON report, --fix output that passes a
second run, one-line errors naming file and line, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuneops.cli.main import main
from tuneops.config.records import PrepareReport
from tuneops.io.files import read_json


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def spans(n: int = 120) -> list[dict]:
    """Span extraction as people first write it: no separator, no leading space, no stop, an extra field, an
    empty completion and a duplicate."""
    rows = [
        {"prompt": f"the show at {i} pm was great, tweet {i}", "completion": f"{i} pm show {i}", "id": i}
        for i in range(n)
    ]
    rows[5]["completion"] = ""
    return rows + [rows[10]]


def labels(n: int = 150) -> list[dict]:
    names = ["negative", "neutral", "positive"]
    return [{"prompt": f"tweet number {i}", "completion": names[i % 3]} for i in range(n)]


def run(
    capsys: pytest.CaptureFixture, *args: str, model: Path | None = None, params: Path | None = None
) -> tuple[int, str, str]:
    """`tuneops [--params P] prepare-data ARGS [--model M]` in this process: exit status, stdout, stderr."""
    argv = (["--params", str(params)] if params else []) + ["prepare-data", *args]
    argv += ["--model", str(model)] if model else []
    code = 0
    try:
        main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model_dir(sample) -> Path:
    return sample.model_dir


def verdicts(out: str) -> dict[str, str]:
    """check -> verdict, from the printed table."""
    rows = [line.split() for line in out.splitlines()]
    table = rows[[r[:2] for r in rows].index(["check", "verdict"]) + 1 :]
    return {r[0]: r[1] for r in table[: next(i for i, r in enumerate(table) if not r)]}


def test_checks_fixes_and_the_fixed_file_passes_a_second_run(tmp_path, capsys, model_dir):
    source = write_jsonl(tmp_path / "spans.jsonl", spans())
    code, out, _ = run(capsys, str(source), "--report", str(tmp_path / "r.json"), model=model_dir)
    assert code == 1  # an empty completion is an error until fixed
    seen = verdicts(out)
    assert seen["empty_completions"] == "error" and seen["separator"] == "warning"
    assert seen["leading_space"] == "warning" and seen["stop_sequence"] == "warning"
    assert seen["extra_fields"] == "warning" and seen["duplicate_pairs"] == "warning"
    assert "at line 6" in out  # the empty completion's line
    report = read_json(tmp_path / "r.json", PrepareReport)
    assert report.length_unit == "tokens" and report.task == "conditional generation" and not report.written
    assert not (tmp_path / "spans_prepared.jsonl").exists()  # checking writes nothing

    code, out, _ = run(capsys, str(source), "--fix", "--yes", "--report", str(tmp_path / "r.json"), model=model_dir)
    assert code == 0
    prepared = tmp_path / "spans_prepared.jsonl"
    rows = read_jsonl(prepared)
    assert len(rows) == 119 and all(set(r) == {"prompt", "completion"} for r in rows)
    assert not (tmp_path / "spans_prepared_train.jsonl").exists()  # generation: no split unless asked
    report = read_json(tmp_path / "r.json", PrepareReport)
    assert {r.verdict for r in report.after_fix} == {"ok"} and report.written[0].rows == 119
    separator, stop = report.separator, report.stop
    assert all(r["prompt"].endswith(separator) and r["completion"].endswith(stop) for r in rows)
    assert f"stop=[{json.dumps(stop)}]" in out and json.dumps(separator) in out  # the reminders

    code, out, _ = run(capsys, str(prepared), model=model_dir)
    assert code == 0 and set(verdicts(out).values()) == {"ok"}


def test_classification_is_split_stratified_into_train_and_valid(tmp_path, capsys, model_dir):
    source = write_jsonl(tmp_path / "labels.jsonl", labels())
    code, out, _ = run(capsys, str(source), "--fix", model=model_dir)
    assert code == 0 and verdicts(out)["task"] == "ok"
    train = read_jsonl(tmp_path / "labels_prepared_train.jsonl")
    valid = read_jsonl(tmp_path / "labels_prepared_valid.jsonl")
    assert (len(train), len(valid)) == (120, 30)
    assert sorted(r["completion"] for r in valid) == sorted([" negative", " neutral", " positive"] * 10)
    for part in ("labels_prepared.jsonl", "labels_prepared_train.jsonl", "labels_prepared_valid.jsonl"):
        code, out, _ = run(capsys, str(tmp_path / part), "--no-split", model=model_dir)
        failed = {check for check, verdict in verdicts(out).items() if verdict != "ok"}
        assert code == 0 and failed == ({"examples"} if "valid" in part else set()), part  # valid: 30 < 100 rows


def test_out_and_split_flags(tmp_path, capsys, model_dir):
    source = write_jsonl(tmp_path / "labels.jsonl", labels())
    out_file = tmp_path / "made" / "ready.jsonl"
    assert run(capsys, str(source), "--fix", "--no-split", "--out", str(out_file), model=model_dir)[0] == 0
    assert out_file.is_file() and not list(tmp_path.rglob("*_train.jsonl"))
    spans_file = write_jsonl(tmp_path / "spans.jsonl", spans())
    assert run(capsys, str(spans_file), "--fix", "--split", model=model_dir)[0] == 0
    assert (tmp_path / "spans_prepared_train.jsonl").is_file() and (tmp_path / "spans_prepared_valid.jsonl").is_file()


def test_csv_with_miscased_headers(tmp_path, capsys, model_dir):
    source = tmp_path / "pairs.csv"
    source.write_text("Prompt,Completion\n" + "".join(f"text {i} ->, answer {i}\n" for i in range(120)))
    code, out, _ = run(capsys, str(source), model=model_dir)
    assert code == 1 and verdicts(out)["keys"] == "error" and "'Prompt' -> 'prompt'" in out
    code, _, _ = run(capsys, str(source), "--fix", model=model_dir)
    assert code == 0 and set(read_jsonl(tmp_path / "pairs_prepared.jsonl")[0]) == {"prompt", "completion"}


def test_a_missing_key_fails_even_with_fix_and_writes_nothing(tmp_path, capsys, model_dir):
    source = write_jsonl(tmp_path / "q.jsonl", [{"question": "a", "answer": "b"}] * 3)
    code, out, _ = run(capsys, str(source), "--fix", model=model_dir)
    assert code == 1 and "no 'prompt' or 'completion' key" in out
    assert not (tmp_path / "q_prepared.jsonl").exists()


BAD = {
    "not json": (b'{"prompt": "a", "completion": " b"}\n\n{"prompt": "c", "completion"\n', r"line 3: not valid JSON"),
    "not an object": (
        b'{"prompt": "a", "completion": " b"}\n["c", "d"]\n',
        r"line 2: expected a JSON object, got list",
    ),
    "not utf-8": (
        b'{"prompt": "a", "completion": " b"}\n{"prompt": "caf\xe9", "completion": " x"}\n',
        r"line 2: bytes that are not UTF-8",
    ),
    "a list for text": (
        b'{"prompt": "a", "completion": " b"}\n{"prompt": ["c"], "completion": " x"}\n',
        r"line 2: field 'prompt' is a list",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_file_and_line_and_exits_2(tmp_path, capsys, case):
    content, expected = BAD[case]
    source = tmp_path / "bad.jsonl"
    source.write_bytes(content)
    code, out, err = run(capsys, str(source), "--model", "unused-before-reading")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {source}: ") and expected in err and err.count("\n") == 1


def test_a_missing_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path / "nope.jsonl"), "--max-tokens", "64")
    assert code == 2 and "nope.jsonl: no such file" in err


def test_without_a_loadable_model_it_counts_characters_and_says_to_pass_model(tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = "no-such-org/no-such-model"  # offline in tests: cannot be fetched
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    source = write_jsonl(tmp_path / "labels.jsonl", labels())
    code, out, err = run(capsys, str(source), params=tmp_path / "params.yaml")
    assert code == 0
    assert "no-such-org/no-such-model" in err and "pass --model DIR" in err
    assert "lengths in characters" in out


def test_on_a_terminal_recommended_fixes_are_asked_and_necessary_ones_are_not(tmp_path, capsys, model_dir, monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    asked: list[str] = []

    def answer(question: str) -> str:
        asked.append(question)
        return "n" if "separator" in question else ""  # Enter accepts, as in OpenAI's tool

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", answer)
    source = write_jsonl(tmp_path / "spans.jsonl", spans())
    code, out, _ = run(capsys, str(source), "--fix", model=model_dir)
    assert code == 0
    assert any("separator" in q for q in asked) and any("space" in q for q in asked)
    assert not any("empty" in q for q in asked)  # an error's fix is necessary: applied without asking
    rows = read_jsonl(tmp_path / "spans_prepared.jsonl")
    assert len(rows) == 119 and all(r["completion"].startswith(" ") for r in rows)
    assert "still:\n- separator (warning)" in out  # declined, and said so
