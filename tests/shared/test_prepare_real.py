"""prepare-data on the real span-extraction tweets (lengths in GPT-2's own tokens), and validate's generation
checks on the same pairs (../shared)."""

from __future__ import annotations

import json

import pandas as pd

from tasks.ingest import ingest
from tasks.validate import validate
from tests.conftest import GPT2_TOKENIZER, ROOT, TWEETS, data_params
from tuneops.cli.main import main
from tuneops.config.params import load_params
from tuneops.config.records import PrepareReport
from tuneops.io.files import read_json

ROWS = 5000  # a fifth of the file: the known empty span (line 315) and duplicates included, in seconds


def prepare(*args: str) -> int:
    try:
        main(["prepare-data", *args, "--model", str(GPT2_TOKENIZER)])
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0


def test_span_extraction_pairs_are_fixed_into_a_file_that_passes(tmp_path, capsys):
    tweets = pd.read_csv(TWEETS / "train.csv", dtype=str, keep_default_na=False).head(ROWS)
    source = tmp_path / "spans.jsonl"
    pairs = [
        {"prompt": f"{text.strip()}\nsentiment: {sentiment}", "completion": span}
        for text, sentiment, span in zip(tweets["text"], tweets["sentiment"], tweets["selected_text"], strict=True)
    ]
    source.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")

    assert prepare(str(source), "--report", str(tmp_path / "before.json")) == 1
    before = {r.check: r for r in read_json(tmp_path / "before.json", PrepareReport).checks}
    assert before["empty_completions"].verdict == "error" and before["empty_completions"].lines == [315]
    assert {before[c].verdict for c in ("separator", "leading_space", "stop_sequence")} == {"warning"}
    assert before["task"].observed == "conditional generation"

    assert prepare(str(source), "--fix", "--yes", "--report", str(tmp_path / "fixed.json")) == 0
    fixed = read_json(tmp_path / "fixed.json", PrepareReport)
    assert fixed.length_unit == "tokens" and fixed.max_length == 1024  # GPT-2's context, from its tokenizer
    assert (fixed.separator, fixed.stop) == ("\n\n###\n\n", "\n")
    assert {r.verdict for r in fixed.after_fix} == {"ok"}

    capsys.readouterr()
    assert prepare(str(tmp_path / "spans_prepared.jsonl")) == 0
    assert "warning" not in capsys.readouterr().out


def test_span_extraction_pairs_pass_validate_with_only_the_known_warnings(tmp_path):
    """The README's span-extraction templates on the real tweets: validate's generation checks pass; the
    mojibake is reported (warnings), the one empty span is under its rate."""
    params = load_params(ROOT / "params.yaml")
    templates = {
        "prompt_template": "{text}\nsentiment: {sentiment}\n\n###\n\n",
        "completion_template": " {selected_text}\n",
    }
    generation = params.generation.model_copy(update=templates)
    ingest(data_params(TWEETS / "train.csv", label_column="sentiment"), tmp_path / "interim", generation)
    records = validate(
        params.validate_,
        params.data.labels,
        tmp_path / "interim",
        tmp_path / "docs",
        tmp_path / "dq.json",
        tmp_path / "verdict.json",
        task="generation",
        stop=generation.stop,
    )
    assert {r.check for r in records if not r.passed} == {"prompt_mojibake_rate", "completion_mojibake_rate"}
    assert (tmp_path / "verdict.json").is_file()
