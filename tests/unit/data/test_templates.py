"""Templates over a source's columns, and OpenAI's rules for chat messages (rendering: tests/unit/data/test_chat.py)."""

from __future__ import annotations

import pytest

from tuneops.config.params import template_fields
from tuneops.data.templates import check_messages, render


def test_templates_name_their_columns_and_render_rows():
    template = "{text}\nsentiment: {sentiment}\n\n###\n\n"
    assert template_fields(template) == ["text", "sentiment"]
    assert render(template, {"text": "so happy", "sentiment": "positive", "x": 1}) == (
        "so happy\nsentiment: positive\n\n###\n\n"
    )


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
ASK = {"role": "user", "content": "Weather in Oslo?"}


def test_developer_is_taken_as_system_and_a_tool_message_needs_tools():
    messages = [{"role": "developer", "content": "Be brief."}, ASK, {"role": "assistant", "content": "Rain."}]
    assert check_messages(messages) == [{**messages[0], "role": "system"}, *messages[1:]]  # as serving renders it
    answer = {"role": "tool", "tool_call_id": "call_1", "content": "rain"}
    with pytest.raises(ValueError, match=r"messages\[2\]\.role .* not 'tool' \(a `tool` message needs"):
        check_messages([ASK, {"role": "assistant", "content": "", "tool_calls": [CALL]}, answer])


def test_with_tools_an_assistant_may_call_them_and_tool_messages_answer_by_id():
    calling = {"role": "assistant", "tool_calls": [CALL]}  # no content: OpenAI's shape of a call
    answer = {"role": "tool", "tool_call_id": "call_1", "content": "rain"}
    talk = [ASK, calling, answer, {"role": "assistant", "content": "Rain.", "weight": 1}]
    assert check_messages(talk, tools=True) == talk
    with pytest.raises(ValueError, match=r"messages\[1\]\.tool_call_id 'call_9' answers no earlier assistant"):
        check_messages([ASK, {**answer, "tool_call_id": "call_9"}], tools=True)
    with pytest.raises(ValueError, match=r"messages\[0\]\.content must be a string"):
        check_messages([{"role": "assistant"}], tools=True)


@pytest.mark.parametrize(
    ("call", "says"),
    [
        ({**CALL, "type": "code"}, r"tool_calls\[0\] must be"),
        ({**CALL, "function": {"name": "f", "arguments": {"city": "Oslo"}}}, r"as a JSON string"),
        ({**CALL, "function": {"name": "f", "arguments": "{city"}}, r"arguments is not JSON"),
    ],
)
def test_a_tool_call_out_of_openais_shape_is_named(call, says):
    with pytest.raises(ValueError, match=says):
        check_messages([ASK, {"role": "assistant", "tool_calls": [call]}], tools=True)
