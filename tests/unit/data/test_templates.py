"""Templates over a source's columns, and chat flattened to a prompt and a completion."""

from __future__ import annotations

import pytest

from tuneops.config.params import ChatTemplate, template_fields
from tuneops.data.templates import chat_pair, chat_prompt, render

CHAT = ChatTemplate(system="{content}\n\n", user="User: {content}\n", assistant="Assistant: {content}\n")


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
