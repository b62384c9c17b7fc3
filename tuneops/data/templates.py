"""Prompt/completion pairs from a source's rows: templates over its columns; the checks of chat messages, and the
declared role templates' parts (tuneops.data.chat renders chat with the model's own template)."""

from __future__ import annotations

from collections.abc import Mapping

from tuneops.config.params import ChatTemplate, template_fields

ROLES = ("system", "user", "assistant")


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


def check_messages(messages: object) -> list[dict[str, str]]:
    """Messages as OpenAI's chat format has them; ValueError naming the first problem."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` must be a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] is not an object")
        if message.get("role") not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, not {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}].content must be a string")
        if "weight" in message and (message["role"] != "assistant" or message["weight"] not in (0, 1)):
            raise ValueError(f"messages[{i}].weight must be 0 or 1, and only on an assistant message (OpenAI's rule)")
    return messages
