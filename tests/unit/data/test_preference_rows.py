"""OpenAI's preference JSONL into ingest's rows: the prompt rendered with the model's chat template and its
generation prompt, each reply through the end of turn; bad lines named by file, line and field; the tokenized
pairs evaluate scores; dpo only for generation."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import parse_params
from tuneops.data.chat import with_chat_template
from tuneops.data.sources import load_local
from tuneops.data.splits import to_pairs
from tuneops.data.tokenization import encode_preferences


def line(user: str, chosen: str, rejected: str) -> dict:
    return {
        "input": {"messages": [{"role": "user", "content": user}]},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def params(**edit):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in edit.items():
        section, name = key.split("__")
        raw[section][name] = value
    return parse_params(raw)


def pairs(tmp_path, records, tokenizer):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    df, origin = load_local(path)["train"]
    return to_pairs(df, origin, params().generation, tokenizer)


def test_a_preference_line_becomes_prompt_completion_and_rejected_in_the_models_chat_template(
    tmp_path, chatml_tokenizer
):
    row = pairs(tmp_path, [line("Best span?", "so happy", "the whole tweet")], chatml_tokenizer).iloc[0]
    assert row["prompt"].endswith("<|im_start|>user\nBest span?<|im_end|>\n<|im_start|>assistant\n")
    assert row["completion"] == "so happy<|im_end|>"  # through the end of turn, and no further: eos once
    assert row["rejected"] == "the whole tweet<|im_end|>"
    assert row["source_text"] == "Best span?" and list(row["prompt_spans"]) == []


def test_a_tokenizer_without_a_template_ends_each_reply_with_the_declared_turn_end(tmp_path, tokenizer):
    declared = with_chat_template(copy.deepcopy(tokenizer), params().generation.chat_template)
    row = pairs(tmp_path, [line("Hi", "yes", "no")], declared).iloc[0]
    assert (row["prompt"], row["completion"], row["rejected"]) == ("User: Hi\nAssistant:", " yes\n", " no\n")


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"non_preferred_output": [{"role": "user", "content": "x"}]}, "non_preferred_output[0].role"),
        ({"preferred_output": []}, "`preferred_output` must be a list of exactly one"),
        ({"input": {"messages": [{"role": "user"}]}}, "input.messages[0].content"),
        ({"input": {"messages": [{"role": "assistant", "content": "q"}]}}, "must end before the reply"),
    ],
)
def test_a_bad_line_is_named_by_file_line_and_field(tmp_path, chatml_tokenizer, bad, said):
    good = line("q", "a", "b")
    with pytest.raises(UserError) as err:
        pairs(tmp_path, [good, {**good, **bad}], chatml_tokenizer)
    assert "prefs.jsonl: line 2:" in str(err.value) and said in str(err.value)


def test_the_tokenized_pairs_share_the_prompt_and_drop_a_pair_too_long_on_either_side(tmp_path, chatml_tokenizer):
    records = [line("Best span?", "so happy", "the whole tweet"), line("Other?", "ok", "word " * 200)]
    df = pairs(tmp_path, records, chatml_tokenizer)
    prompt_ids = chatml_tokenizer(df["prompt"].iloc[0])["input_ids"]
    columns, stats = encode_preferences(df, chatml_tokenizer, max_length=100)
    assert len(columns["input_ids"]) == 1 and stats.rows == 2 and stats.truncation_rate == 0.5
    start = columns["prompt_length"][0]
    assert start == len(prompt_ids) and columns["input_ids"][0][:start] == columns["rejected_input_ids"][0][:start]
    im_end = chatml_tokenizer.convert_tokens_to_ids("<|im_end|>")
    rejected_ids = columns["rejected_input_ids"][0]
    assert rejected_ids[-1] == im_end and rejected_ids.count(im_end) == prompt_ids.count(im_end) + 1  # eos once
    assert columns["rejected"] == ["the whole tweet<|im_end|>"]


def test_dpo_needs_task_generation_and_says_so():
    with pytest.raises(UserError, match="train.objective: dpo .* needs task: generation"):
        params(train__objective="dpo")  # params.yaml's task: classification
