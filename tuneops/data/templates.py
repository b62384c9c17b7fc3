"""Prompt/completion pairs from a source's rows: templates over its columns, and chat messages flattened.

One place for both directions: ingest makes training pairs with these functions, and the server renders a chat
request with the same template, so a model is always asked the way it was taught.
"""

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


def turn(chat: ChatTemplate, role: str, content: str) -> str:
    return getattr(chat, role).replace("{content}", content)


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
    return messages


def chat_prompt(messages: list[dict[str, str]], chat: ChatTemplate) -> tuple[str, list[str]]:
    """The text that asks for the assistant's next reply, and the stop sequences that end it."""
    prefix, suffix = reply_parts(chat)
    text = "".join(turn(chat, m["role"], m["content"]) for m in check_messages(messages))
    return text + prefix, [suffix] if suffix else []


def chat_pair(messages: object, chat: ChatTemplate) -> tuple[str, str, str]:
    """A training pair from a conversation: every turn before the last as the prompt, the last (the
    assistant's) as the completion, ending with the template's suffix; and the last user message (for the
    copy baseline)."""
    messages = check_messages(messages)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's reply (the completion to learn)")
    prompt, _ = chat_prompt(messages[:-1], chat)
    _, suffix = reply_parts(chat)
    users = [m["content"] for m in messages if m["role"] == "user"]
    return prompt, " " + messages[-1]["content"].lstrip(" ") + suffix, users[-1] if users else ""
