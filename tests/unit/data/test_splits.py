"""The canonical pairs: columns through templates, chat rows as pairs, bad rows named, leak-free carving."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import GenerationParams, load_params
from tuneops.data.splits import carve, to_pairs


def gen_params(**updates) -> GenerationParams:
    base = load_params(ROOT / "params.yaml").generation
    return base.model_copy(update=updates)


def test_pairs_from_columns_through_templates():
    df = pd.DataFrame(
        {"text": ["so happy", "meh"], "sentiment": ["positive", "neutral"], "selected_text": ["happy", "meh"]}
    )
    gen = gen_params(prompt_template="{text} | {sentiment} ->", completion_template=" {selected_text}\n")
    pairs = to_pairs(df, "d.csv", gen)
    assert pairs.to_dict("records")[0] == {
        "prompt": "so happy | positive ->",
        "completion": " happy\n",
        "source_text": "so happy",
        "prompt_spans": [],
        "completion_weight": 1.0,
    }


def test_chat_jsonl_rows_become_pairs_and_a_bad_one_names_its_line(tokenizer):
    import copy

    from tuneops.data.chat import with_chat_template

    declared = with_chat_template(copy.deepcopy(tokenizer), gen_params().chat_template)
    good = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    pairs = to_pairs(pd.DataFrame({"messages": [good]}), "chat.jsonl", gen_params(), declared)
    assert pairs.iloc[0][["prompt", "completion", "source_text"]].tolist() == ["User: 2+2?\nAssistant:", " 4\n", "2+2?"]
    with pytest.raises(UserError, match=r"chat.jsonl: line 2: field 'messages': .*last message"):
        to_pairs(pd.DataFrame({"messages": [good, good[:1]]}), "chat.jsonl", gen_params(), declared)


def test_a_missing_column_says_which_template_to_set_and_a_missing_value_its_row():
    df = pd.DataFrame({"Prompt": ["a"], "completion": [" b"]})
    with pytest.raises(UserError, match=r"column 'prompt' not found .*generation.prompt_template.*prepare-data"):
        to_pairs(df, "d.jsonl", gen_params())
    df = pd.DataFrame({"prompt": ["a", None], "completion": [" b", " c"]})
    with pytest.raises(UserError, match=r"d.csv: row 2: field 'prompt' is missing"):
        to_pairs(df, "d.csv", gen_params())


def test_carving_pairs_keeps_equal_prompts_on_one_side():
    df = pd.DataFrame(
        {"prompt": [f"p{i % 20}" for i in range(100)], "completion": ["x"] * 100, "source_text": ["s"] * 100}
    )
    kept, held = carve(df, 0.2, seed=0)
    assert not set(kept["prompt"]) & set(held["prompt"])
    assert len(kept) + len(held) == 100


def test_classification_as_completion_gets_the_classification_split_row_for_row():
    from tests.conftest import data_params
    from tuneops.data.sample import sample_texts
    from tuneops.data.splits import to_canonical

    df = sample_texts(300)
    labelled = to_canonical(df, "d.csv", data_params("d.csv", label_column="sentiment"))
    gen = gen_params(prompt_template="{text}\n\n###\n\n", completion_template=" {sentiment}\n")
    pairs = to_pairs(df, "d.csv", gen)
    _, held_labelled = carve(labelled, 0.2, seed=42)
    _, held_pairs = carve(pairs, 0.2, seed=42)
    assert held_pairs["source_text"].tolist() == held_labelled["text"].tolist()
