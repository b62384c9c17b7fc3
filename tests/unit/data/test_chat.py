"""Chat rendered with the model's own template, the same at training and at serving: the declared template as
Jinja, multi-turn masks found by rendering prefixes, `weight: 0`, and identical token ids on both paths."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import ChatTemplate, load_params
from tuneops.data.chat import chat_example, declared_template, render, turn_end, with_chat_template
from tuneops.data.splits import to_pairs
from tuneops.data.tokenization import encode_pairs
from tuneops.models.batches import CompletionCollator

CHAT = ChatTemplate(system="{content}\n\n", user="User: {content}\n", assistant="Assistant: {content}\n")
TALK = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": 'Hi "there" {x}'},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How is the beach?"},
    {"role": "assistant", "content": "Sunny."},
]


@pytest.fixture
def declared(tokenizer):
    """The sample's GPT-2 tokenizer (no template of its own) with params' declared one, as training sets it."""
    return with_chat_template(copy.deepcopy(tokenizer), CHAT)


def test_the_declared_template_renders_what_the_role_templates_say(declared):
    assert render(declared, TALK[:-1], add_generation_prompt=True) == (
        'Be brief.\n\nUser: Hi "there" {x}\nAssistant: Hello!\nUser: How is the beach?\nAssistant:'
    )
    example = chat_example(declared, TALK)
    assert example.completion == " Sunny.\n"  # a reply starts with its space (GPT-2's " word" token)
    assert turn_end(declared) == "\n"
    assert declared.chat_template == declared_template(CHAT)


def test_a_tokenizers_own_template_wins_over_the_declared_one(chatml_tokenizer):
    own = with_chat_template(copy.deepcopy(chatml_tokenizer), CHAT)
    rendered = render(own, TALK[1:2], add_generation_prompt=True)
    assert rendered.endswith('<|im_start|>user\nHi "there" {x}<|im_end|>\n<|im_start|>assistant\n')
    assert turn_end(own) == "<|im_end|>"


@pytest.mark.parametrize("which", ["declared", "chatml"])
def test_every_assistant_turn_trains_and_weight_0_does_not(which, declared, chatml_tokenizer):
    tokenizer = declared if which == "declared" else chatml_tokenizer
    example = chat_example(tokenizer, TALK)
    assert [example.prompt[s:e] for s, e in example.prompt_spans] == [
        "Hello!<|im_end|>\n" if which == "chatml" else " Hello!\n"
    ]
    assert example.completion_weight == 1.0 and example.user_text == "How is the beach?"
    quiet = [*TALK[:2], {**TALK[2], "weight": 0}, *TALK[3:]]
    assert chat_example(tokenizer, quiet).prompt_spans == []
    last_quiet = [*TALK[:-1], {**TALK[-1], "weight": 0}]
    assert chat_example(tokenizer, last_quiet).completion_weight == 0.0
    with pytest.raises(ValueError, match="weight 0: nothing to learn"):
        chat_example(tokenizer, [*quiet[:-1], {**TALK[-1], "weight": 0}])


def test_the_collator_trains_exactly_the_assistant_replies(chatml_tokenizer):
    gen = load_params(ROOT / "params.yaml").generation
    pairs = to_pairs(pd.DataFrame({"messages": [TALK]}), "chat.jsonl", gen, chatml_tokenizer)
    columns, _ = encode_pairs(pairs, chatml_tokenizer, max_length=512)
    row = {name: columns[name][0] for name in ("input_ids", "prompt_length", "loss_spans")}
    batch = CompletionCollator(chatml_tokenizer.pad_token_id)([row])
    trained = [t for t, label in zip(row["input_ids"], batch["labels"][0].tolist(), strict=True) if label != -100]
    # both replies with their end of turn; eos is <|im_end|> already, so none is added after the last
    assert chatml_tokenizer.decode(trained) == "Hello!<|im_end|>\nSunny.<|im_end|>\n"


@pytest.mark.parametrize("which", ["declared", "chatml"])
def test_training_and_serving_render_a_conversation_to_the_same_token_ids(which, declared, chatml_tokenizer):
    tokenizer = declared if which == "declared" else chatml_tokenizer
    gen = load_params(ROOT / "params.yaml").generation
    pairs = to_pairs(pd.DataFrame({"messages": [TALK]}), "chat.jsonl", gen, tokenizer)
    columns, _ = encode_pairs(pairs, tokenizer, max_length=512)
    training_prompt = columns["input_ids"][0][: columns["prompt_length"][0]]
    # the serving path: /v1/chat/completions renders the request's messages and tokenizes the text as a prompt
    serving_prompt = tokenizer(render(tokenizer, TALK[:-1], add_generation_prompt=True))["input_ids"]
    assert training_prompt == serving_prompt


def test_a_template_that_rewrites_earlier_turns_is_refused_at_ingest_with_file_line_and_reason(tokenizer):
    # Like templates that drop an earlier reply's reasoning once the conversation goes on: the last reply renders
    # in full, earlier ones without their first word, so no prefix of the conversation is what training would see.
    rewriting = copy.deepcopy(tokenizer)
    rewriting.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{ 'A: ' + m['content'].split(' ', 1)[-1] + '\\n' }}{% else %}{{ m['role'] + ': ' + m['content'] + '\\n' }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    gen = load_params(ROOT / "params.yaml").generation
    talk = [*TALK[1:3], {"role": "user", "content": "more"}, {"role": "assistant", "content": "ok then"}]
    frame = pd.DataFrame({"messages": [TALK[1:3], talk]})
    with pytest.raises(UserError, match=r"chat.jsonl: line 2: field 'messages': .*cannot be told apart"):
        to_pairs(frame, "chat.jsonl", gen, rewriting)


def test_a_templates_own_refusal_is_a_clear_error(tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(ValueError, match="refused these messages: no system role"):
        chat_example(strict, TALK)


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([{"role": "user", "content": "Hi"}], "last message must be the assistant"),
        ([{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "x"}], r"messages\[0\]\.role"),
        ("hello", "non-empty list"),
        ([{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}], r"messages\[0\]\.content"),
        ([{"role": "user", "content": "a", "weight": 0}, {"role": "assistant", "content": "x"}], r"\[0\]\.weight"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "x", "weight": 2}], r"\[1\]\.weight"),
    ],
)
def test_bad_chat_messages_are_named(messages, says, declared):
    with pytest.raises(ValueError, match=says):
        chat_example(declared, messages)


def test_a_function_calling_example_trains_on_its_tool_call_and_its_reply_with_the_tools_in_the_prompt(
    chatml_tokenizer,
):
    from tests.unit.jobs.test_file_check import TOOLS_CHATML, WITH_TOOLS

    tokenizer = copy.deepcopy(chatml_tokenizer)
    tokenizer.chat_template = TOOLS_CHATML
    example = chat_example(tokenizer, WITH_TOOLS["messages"], WITH_TOOLS["tools"])
    assert example.prompt.startswith("<|im_start|>system\nget_weather\n<|im_end|>")  # the tools, as trained with
    assert example.completion == "Rain.<|im_end|>\n"
    (call,) = [example.prompt[s:e] for s, e in example.prompt_spans]  # the earlier assistant turn trains too
    assert '<tool_call>get_weather {"city": "Oslo"}</tool_call>' in call
    with pytest.raises(ValueError, match=r"messages\[1\]"):  # without its tools, the call is no message at all
        chat_example(tokenizer, WITH_TOOLS["messages"])
    frame = pd.DataFrame({"messages": [WITH_TOOLS["messages"]], "tools": [WITH_TOOLS["tools"]]})
    pairs = to_pairs(frame, "chat.jsonl", load_params(ROOT / "params.yaml").generation, tokenizer)
    assert pairs["completion"].tolist() == ["Rain.<|im_end|>\n"]
