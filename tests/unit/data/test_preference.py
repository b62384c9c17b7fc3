"""OpenAI's preference (DPO) format read by its one reader: what a line must hold, each mistake named."""

from __future__ import annotations

import pytest

from tuneops.data.preference import check_preference, is_preference

ASK = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def line(**changes: object) -> dict[str, object]:
    return {
        "input": {"messages": ASK},
        "preferred_output": [{"role": "assistant", "content": "Hello."}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        **changes,
    }


def test_a_preference_line_is_told_from_chat_and_read_into_its_parts():
    assert is_preference(line()) and not is_preference({"messages": ASK}) and not is_preference([line()])
    record = check_preference(line(input={"messages": ASK, "tools": [{"type": "function"}]}))
    as_system = [{**ASK[0], "role": "system"}, ASK[1]]  # developer is taken as system, as serving renders it
    assert (record.messages, record.chosen, record.rejected) == (as_system, "Hello.", "Go away.")
    assert record.tools == [{"type": "function"}]


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ({"input": {"messages": ASK}}, "missing `preferred_output`, `non_preferred_output`"),
        (line(extra=1), "unknown field 'extra'"),
        (line(input=ASK), "`input` must be an object with `messages`"),
        (line(input={"messages": [{"role": "robot", "content": "x"}]}), r"input\.messages\[0\]\.role"),
        (line(input={"messages": [*ASK, {"role": "assistant", "content": "x"}]}), "must end before the reply"),
        (line(preferred_output=[{"role": "user", "content": "x"}]), r"`preferred_output\[0\]\.role` must be"),
        (line(non_preferred_output=[]), "`non_preferred_output` must be a list of exactly one"),
        (line(non_preferred_output=[{"role": "assistant", "content": "Hello."}]), "the same reply"),
    ],
)
def test_each_mistake_is_named(record, says):
    with pytest.raises(ValueError, match=says):
        check_preference(record)
