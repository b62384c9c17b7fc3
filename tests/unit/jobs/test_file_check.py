"""The upload check of a fine-tuning file: every OpenAI format, line-numbered reasons, OpenAI's example counts,
and chat rendered by the template a job will use (tools and developer messages only where it writes them)."""

from __future__ import annotations

import copy
import json

import pytest

from tuneops.config.params import ChatTemplate
from tuneops.data.chat import chat_example, with_chat_template
from tuneops.jobs.file_check import FileCheck, Template, check_lines
from tuneops.quality.reading import ChatTokenizer

TALK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
WITH_TOOLS = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "assistant", "content": "Rain."},
    ],
    "tools": [TOOL],
}
# ChatML that writes the tools into a system turn and the calls into the assistant's, as Qwen2.5's does
TOOLS_CHATML = (
    "{% if tools %}<|im_start|>system\n{% for t in tools %}{{ t['function']['name'] }}\n{% endfor %}<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
    "{% for c in m['tool_calls'] or [] %}<tool_call>{{ c['function']['name'] }} {{ c['function']['arguments'] }}"
    "</tool_call>{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DECLARED = ChatTemplate(system="{content}\n\n", user="User: {content}\n", assistant="Assistant: {content}\n")


def chat(i: int, **extra: object) -> dict[str, object]:
    return {"messages": [*TALK, {"role": "assistant", "content": f"Hello {i}."}], **extra}


def preference(i: int) -> dict[str, object]:
    return {
        "input": {"messages": TALK},
        "preferred_output": [{"role": "assistant", "content": f"Hello {i}."}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }


def checked(tmp_path, lines: list[object], tokenizer=None, model: str = "chatml-model") -> FileCheck:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    loaded = ChatTokenizer(model, tokenizer, None if tokenizer else "the Hub is switched off")
    return check_lines(path, Template(lambda: loaded)).result()


def with_template(tokenizer, template: str):
    own = copy.deepcopy(tokenizer)
    own.chat_template = template
    return own


def test_a_good_chat_file_passes_and_under_50_examples_is_only_a_warning(tmp_path, chatml_tokenizer):
    found = checked(tmp_path, [chat(i) for i in range(12)], chatml_tokenizer)
    assert found.errors == [] and found.status == "processed"
    assert found.warnings == [found.warnings[0]] and found.warnings[0].startswith("12 examples: OpenAI recommends")
    assert found.details.startswith("warning: 12 examples")
    assert checked(tmp_path, [chat(i) for i in range(50)], chatml_tokenizer).details is None


def test_fewer_than_ten_examples_is_an_error(tmp_path, chatml_tokenizer):
    found = checked(tmp_path, [chat(i) for i in range(9)], chatml_tokenizer)
    assert found.status == "error" and found.errors == ["9 example(s): OpenAI's fine-tuning takes at least 10"]


def test_chat_lines_break_openais_rules_each_named_by_its_line(tmp_path, chatml_tokenizer):
    lines = [chat(i) for i in range(12)]
    lines[1] = {"messages": [{"role": "user", "content": "a", "weight": 0}, {"role": "assistant", "content": "b"}]}
    lines[3] = {"messages": [*TALK, {"role": "assistant", "content": "b", "weight": 0}]}
    lines[5] = {"messages": TALK}
    lines[7] = chat(7, extra=1)
    lines[8] = "not json\n"
    errors = checked(tmp_path, lines, chatml_tokenizer).errors
    assert errors[0].startswith("line 2: messages[0].weight must be 0 or 1, and only on an assistant message")
    assert errors[1].startswith("line 4: no assistant message to learn")
    assert errors[2].startswith("line 6: the last message must be the assistant's reply")
    assert errors[3].startswith("line 8: unknown field 'extra'")
    assert errors[4].startswith("line 9: not JSON")
    assert len(errors) == 5


def test_a_line_the_template_refuses_is_named(tmp_path, tokenizer):
    strict = with_template(
        tokenizer,
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}",
    )
    errors = checked(tmp_path, [chat(i) for i in range(10)], strict).errors
    assert errors[0] == "line 1: the model's chat template refused these messages: no system role"


def test_tools_are_refused_naming_the_line_unless_the_template_renders_them(tmp_path, chatml_tokenizer):
    lines = [chat(i) for i in range(12)]
    lines[2] = WITH_TOOLS
    found = checked(tmp_path, lines, chatml_tokenizer, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert found.errors == [
        "line 3: tools: the chat template of HuggingFaceTB/SmolLM2-135M-Instruct does not render tools; remove them "
        "or use a model whose template does"
    ]
    assert checked(tmp_path, lines, with_template(chatml_tokenizer, TOOLS_CHATML)).errors == []


def test_tool_calls_must_be_declared_and_answered(tmp_path, chatml_tokenizer):
    tools_template = with_template(chatml_tokenizer, TOOLS_CHATML)
    lines = [chat(i) for i in range(12)]
    lines[0] = {"messages": WITH_TOOLS["messages"]}
    lines[1] = {**WITH_TOOLS, "messages": [WITH_TOOLS["messages"][0], *WITH_TOOLS["messages"][2:]]}
    errors = checked(tmp_path, lines, tools_template).errors
    assert errors[0] == "line 1: the line calls tools (`tool_calls`, `tool` messages) but declares no `tools`"
    assert errors[1] == "line 2: messages[1].tool_call_id 'call_1' answers no earlier assistant tool call"


def test_developer_messages_are_rendered_as_system_ones_as_serving_does(tmp_path, tokenizer):
    developer = {"messages": [{"role": "developer", "content": "Be brief."}, *chat(0)["messages"][1:]]}
    declared = with_chat_template(copy.deepcopy(tokenizer), DECLARED)  # system, user and assistant turns only
    assert checked(tmp_path, [developer] + [chat(i) for i in range(1, 12)], declared).errors == []
    as_developer = chat_example(declared, developer["messages"])
    assert as_developer == chat_example(declared, chat(0)["messages"]) and as_developer.prompt.startswith("Be brief.")


def test_preference_lines_are_checked_by_the_preference_reader(tmp_path, chatml_tokenizer):
    lines = [preference(i) for i in range(12)]
    assert checked(tmp_path, lines, chatml_tokenizer).errors == []
    lines[4] = {**preference(4), "non_preferred_output": preference(4)["preferred_output"]}
    lines[6] = {k: v for k, v in preference(6).items() if k != "input"}
    errors = checked(tmp_path, lines, chatml_tokenizer).errors
    assert errors[0] == "line 5: preferred_output and non_preferred_output are the same reply: nothing to prefer"
    assert errors[1].startswith("line 7: missing `input`")


def test_a_file_mixing_formats_names_the_first_line_of_the_other(tmp_path, chatml_tokenizer):
    pair = {"prompt": "a ->", "completion": " b\n"}
    lines = [chat(i) for i in range(12)] + [pair, preference(0), pair]
    errors = checked(tmp_path, lines, chatml_tokenizer).errors
    assert errors == [
        "line 13: a prompt/completion (`prompt`, `completion`) line in a chat file (line 1 is one): a file holds one "
        "format (3 line(s) of another)"
    ]


def test_only_the_first_20_line_problems_are_listed_and_the_rest_counted(tmp_path, chatml_tokenizer):
    found = checked(tmp_path, [chat(i) for i in range(10)] + ["[1]\n"] * 25, chatml_tokenizer)
    listed = [e for e in found.errors if e.startswith("line ")]
    assert len(listed) == 20 and listed[0] == "line 11: a JSON list, not an object"
    assert found.errors[-1] == "and 5 more line problem(s) like these"


def test_without_a_loadable_template_chat_lines_pass_with_a_warning(tmp_path):
    found = checked(tmp_path, [chat(i) for i in range(50)], tokenizer=None)
    assert found.status == "processed"
    assert found.warnings == [
        "the lines were not rendered with the chat template of chatml-model (it could not be loaded: the Hub is "
        "switched off); a job renders them when it starts"
    ]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ({"prompt": "a ->"}, "line 1: no `completion`"),
        ({"prompt": ["a"], "completion": "b"}, "line 1: `prompt` is a list, expected text"),
        ({"text": "a"}, "line 1: in no format OpenAI takes"),
    ],
)
def test_a_line_in_no_format_or_a_broken_pair_is_named(tmp_path, line, says):
    pair = {"prompt": "a ->", "completion": " b\n"}
    assert checked(tmp_path, [line] + [pair] * 10).errors[0].startswith(says)


def test_past_the_size_cap_the_whole_file_checks_are_left_to_the_job(tmp_path, monkeypatch):
    """prepare-data's checks hold every pair in memory: a file past WHOLE_FILE_CHECK_BYTES gets the line checks
    only, and a warning saying the job runs the rest (one answer to every prompt is found then, not at upload)."""
    from tests.conftest import ROOT
    from tuneops.jobs import file_check

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": "same ->", "completion": " same\n"}) + "\n" for _ in range(12)))
    checked_whole = file_check.check_training_file(path, ROOT / "params.yaml")
    assert any("the model would learn one answer" in e for e in checked_whole.errors), checked_whole.errors
    monkeypatch.setattr(file_check, "WHOLE_FILE_CHECK_BYTES", path.stat().st_size - 1)
    left = file_check.check_training_file(path, ROOT / "params.yaml")
    assert left.errors == [] and any("checked when a job prepares the data" in w for w in left.warnings)
