"""Generation's pure parts: templates and chat flattening, masking by position, scoring, the gate."""

import math

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import ChatTemplate, GenerationParams, load_params, parse_params
from tuneops.config.records import BaselineScores, Champion, Gap, GenerationMetrics, GenerationScores
from tuneops.data.splits import carve, to_pairs
from tuneops.data.templates import chat_pair, chat_prompt, render, template_fields
from tuneops.data.tokenization import encode_pairs
from tuneops.evaluation.gate import gate_generation
from tuneops.evaluation.lm_scoring import answer, baselines, common_suffix, jaccard
from tuneops.evaluation.metrics import token_accuracy
from tuneops.models.loading import CompletionCollator

CHAT = ChatTemplate(system="{content}\n\n", user="User: {content}\n", assistant="Assistant: {content}\n")


def gen_params(**updates) -> GenerationParams:
    base = load_params(ROOT / "params.yaml").generation
    return base.model_copy(update=updates)


def test_templates_name_their_columns_and_render_rows():
    template = "{text}\nsentiment: {sentiment}\n\n###\n\n"
    assert template_fields(template) == ["text", "sentiment"]
    assert render(template, {"text": "so happy", "sentiment": "positive", "x": 1}) == (
        "so happy\nsentiment: positive\n\n###\n\n"
    )


def test_chat_flattens_to_the_prompt_and_a_completion_that_starts_with_a_space_and_ends_with_the_stop():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    prompt, completion, source = chat_pair(messages, CHAT)
    assert prompt == "Be brief.\n\nUser: Hi\nAssistant:"
    assert completion == " Hello!\n"
    assert source == "Hi"
    # the server asks the same way, and stops where the assistant's turn ends
    assert chat_prompt(messages[:-1], CHAT) == (prompt, ["\n"])


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([{"role": "user", "content": "Hi"}], "last message must be the assistant"),
        ([{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "x"}], r"messages\[0\]\.role"),
        ("hello", "non-empty list"),
        ([{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}], r"messages\[0\]\.content"),
    ],
)
def test_bad_chat_messages_are_named(messages, says):
    with pytest.raises(ValueError, match=says):
        chat_pair(messages, CHAT)


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
    }


def test_chat_jsonl_rows_become_pairs_and_a_bad_one_names_its_line():
    good = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    pairs = to_pairs(pd.DataFrame({"messages": [good]}), "chat.jsonl", gen_params())
    assert pairs.iloc[0]["completion"] == " 4\n"
    with pytest.raises(UserError, match=r"chat.jsonl: line 2: field 'messages': .*last message"):
        to_pairs(pd.DataFrame({"messages": [good, good[:1]]}), "chat.jsonl", gen_params())


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


def test_pairs_become_prompt_completion_eos_and_too_long_ones_are_dropped(tokenizer):
    df = pd.DataFrame(
        {"prompt": ["I love it ->", "x " * 200], "completion": [" love\n", " y\n"], "source_text": ["a", "b"]}
    )
    columns, stats = encode_pairs(df, tokenizer, max_length=64)
    assert len(columns["input_ids"]) == 1 and stats.truncation_rate == 0.5
    ids, start = columns["input_ids"][0], columns["prompt_length"][0]
    assert ids[:start] == tokenizer("I love it ->")["input_ids"]
    assert ids[start:] == tokenizer(" love\n")["input_ids"] + [tokenizer.eos_token_id]


def test_collator_masks_by_position_so_the_eos_that_ends_a_completion_is_learned(tokenizer):
    eos = tokenizer.eos_token_id  # also the pad id: GPT-2's quirk
    rows = [{"input_ids": [5, 6, 7, eos], "prompt_length": 2}, {"input_ids": [5, 6, 7, 8, 9, eos], "prompt_length": 3}]
    batch = CompletionCollator(eos)(rows)
    assert batch["labels"].tolist() == [[-100, -100, 7, eos, -100, -100], [-100, -100, -100, 8, 9, eos]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert "loss_weights" not in batch


def test_prompt_loss_weight_weighs_prompt_tokens_and_not_padding():
    batch = CompletionCollator(0, prompt_loss_weight=0.1, pad_to_multiple_of=4)(
        [{"input_ids": [1, 2, 3], "prompt_length": 2}]
    )
    assert batch["input_ids"].shape == (1, 4)
    assert torch.allclose(batch["loss_weights"], torch.tensor([[0.1, 0.1, 1.0, 0.0]]))


def test_token_accuracy_counts_completion_tokens_only():
    labels = torch.tensor([[-100, -100, 7, 8, -100]])  # position t predicts token t+1
    predicted = torch.tensor([[0, 7, 9, 0, 0]])  # 7 right, 8 wrong; the rest is prompt or padding
    assert token_accuracy(predicted.numpy(), labels.numpy()) == 0.5


def test_jaccard_is_kaggles_word_overlap():
    assert jaccard("so sad", "so sad") == 1.0
    assert jaccard("so sad", "Sad today") == pytest.approx(1 / 3)
    assert jaccard("", "") == 1.0
    assert answer(" the worst\n", ["\n"]) == "the worst"


def test_baselines_copy_the_input_without_its_separator_and_repeat_the_majority():
    sources = ["I hate rain", "so happy today"]
    expected = ["hate", "so happy today"]
    scores = baselines(sources, ["hate", "hate", "x"], expected)
    assert scores["copy_prompt"].jaccard == pytest.approx((1 / 3 + 1) / 2)
    assert scores["most_frequent"].exact_match == 0.5
    assert common_suffix(["a ->", "bb ->"]) == " ->"


def gen_metrics(jaccard_=0.7, loss_gap=0.1, copy=0.59) -> GenerationMetrics:
    test = GenerationScores(
        loss=1.0 + loss_gap, perplexity=math.e, token_accuracy=0.6, exact_match=0.4, jaccard=jaccard_
    )
    train = GenerationScores(loss=1.0, perplexity=math.e, token_accuracy=0.65)
    return GenerationMetrics(
        test=test,
        train=train,
        gap=Gap(accuracy=0.05, loss=loss_gap),
        baselines={
            "copy_prompt": BaselineScores(exact_match=0.3, jaccard=copy),
            "most_frequent": BaselineScores(exact_match=0.1, jaccard=0.1),
        },
    )


def evaluate_params():
    return load_params(ROOT / "params.yaml").evaluate


def test_generation_gate_passes_a_candidate_that_beats_the_baselines_and_the_champion():
    champion = Champion(name="m", version="1", alias="champion", run_id="r", metrics={"test_jaccard": 0.6})
    verdict = gate_generation(gen_metrics(), evaluate_params(), champion)
    assert verdict.verdict == "passed", verdict.failed


@pytest.mark.parametrize(
    ("metrics", "champion_score", "fails"),
    [
        (gen_metrics(jaccard_=0.55), None, {"beats_baseline"}),  # copying the tweet does better
        (gen_metrics(jaccard_=0.2, copy=0.1), None, {"min_jaccard"}),
        (gen_metrics(loss_gap=0.9), None, {"max_loss_gap"}),
        (gen_metrics(), 0.699, {"beats_champion"}),  # not by min_improvement
        (gen_metrics(jaccard_=float("nan")), None, {"min_jaccard", "beats_baseline", "beats_champion"}),
    ],
)
def test_generation_gate_fails_by_name(metrics, champion_score, fails):
    champion = None
    if champion_score is not None:
        champion = Champion(
            name="m", version="1", alias="champion", run_id="r", metrics={"test_jaccard": champion_score}
        )
    verdict = gate_generation(metrics, evaluate_params(), champion)
    assert {c.check for c in verdict.failed} == fails


def raw_params() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda p: p.update(task="generation") or p["train"]["args"].update(metric_for_best_model="macro_f1"),
            "macro_f1 is a classification metric",
        ),
        (lambda p: p["generation"].update(stop=["\n", ""]), "generation.stop: an empty stop sequence"),
        (
            lambda p: p["generation"]["chat_template"].update(user="User: "),
            r"generation.chat_template.user: needs \{content\}",
        ),
        (lambda p: p["generation"].update(prompt_template="no fields"), "generation.prompt_template: names no column"),
        (lambda p: p.update(task="translation"), "task: Input should be 'classification' or 'generation'"),
    ],
)
def test_generation_params_are_checked(edit, says):
    raw = raw_params()
    edit(raw)
    with pytest.raises(UserError, match=says):
        parse_params(raw)


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
