"""Prompt/completion pairs from a source's rows: templates over its columns; the checks of chat messages, and the
declared role templates' parts (tuneops.data.chat renders chat with the model's own template)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from tuneops.config.params import ChatTemplate, template_fields

ROLES = ("system", "developer", "user", "assistant")  # OpenAI's chat roles an example may hold
TOOL_ROLE = "tool"  # a function's result: only in an example that declares its tools


def render(template: str, row: Mapping[str, object]) -> str:
    """The template filled with the row's values as text (missing columns are checked by the caller)."""
    return template.format_map({name: str(row[name]) for name in template_fields(template)})


def reply_parts(chat: ChatTemplate) -> tuple[str, str]:
    """The assistant template around its `{content}`: the prefix ends the prompt, the suffix ends the reply.

    A trailing space of the prefix moves into the reply: GPT-2's byte-level BPE reads " word" as one token,
    so completions start with their space (as OpenAI's data preparation recommends).
    """
    prefix, suffix = chat.assistant.split("{content}")
    return prefix.rstrip(" "), suffix


def check_messages(messages: object, *, tools: bool = False) -> list[dict[str, str]]:
    """Messages as OpenAI's chat format has them; ValueError naming the first problem.

    `tools`: the conversation may call functions (OpenAI's function-calling format, allowed where the example
    declares its `tools`): assistant messages with `tool_calls` (content then optional) and `tool` messages
    answering an earlier call by its id. Without it a `tool` message is refused, as serving and preference data
    have no tools to render.

    Returned as the chat template takes them: `developer` (OpenAI's newer name for `system`) as `system`, as
    serving has always rendered it (tuneops.serve.openai.chat.messages), so training renders what serving will;
    a template without a developer turn (the declared one, most open models') would else write it as a user's turn
    or under a role name the model never saw."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` must be a non-empty list of {role, content} objects")
    roles = (*ROLES, TOOL_ROLE) if tools else ROLES
    called: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] is not an object")
        role = message.get("role")
        if role not in roles:
            needs = " (a `tool` message needs the example's `tools`)" if role == TOOL_ROLE else ""
            raise ValueError(f"messages[{i}].role must be one of {', '.join(roles)}, not {role!r}{needs}")
        calls = tool_call_ids(message, i) if tools and role == "assistant" else []
        if role == TOOL_ROLE:
            check_tool_reply(message, i, called)
        called.update(calls)
        if not isinstance(message.get("content"), str) and not (calls and message.get("content") is None):
            raise ValueError(f"messages[{i}].content must be a string")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            raise ValueError(f"messages[{i}].weight must be 0 or 1, and only on an assistant message (OpenAI's rule)")
    return [{**m, "role": "system"} if m["role"] == "developer" else m for m in messages]


def tool_call_ids(message: dict[str, object], i: int) -> list[str]:
    """The ids of an assistant message's `tool_calls` (OpenAI's shape: id, type "function", function with name
    and JSON `arguments`), [] when it calls none."""
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list) or not calls:
        raise ValueError(f"messages[{i}].tool_calls must be a non-empty list")
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function":
            raise ValueError(f'{where} must be {{"id": ..., "type": "function", "function": {{name, arguments}}}}')
        if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
            raise ValueError(f"{where}.function must have a `name` and its `arguments` as a JSON string")
        try:
            json.loads(function["arguments"])
        except json.JSONDecodeError:
            raise ValueError(f"{where}.function.arguments is not JSON: {function['arguments'][:60]!r}") from None
    return [call["id"] for call in calls]


def check_tool_reply(message: dict[str, object], i: int, called: set[str]) -> None:
    """A `tool` message answers an earlier assistant tool call, by its id."""
    answered = message.get("tool_call_id")
    if answered not in called:
        raise ValueError(f"messages[{i}].tool_call_id {answered!r} answers no earlier assistant tool call")
