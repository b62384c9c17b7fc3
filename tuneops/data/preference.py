"""OpenAI's preference format (DPO fine-tuning): one JSON object a line,

    {"input": {"messages": [...], "tools": [...]?, "parallel_tool_calls": ...?},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

`input.messages` is a chat conversation (templates.check_messages' rules) ending where the model answers; each
output is exactly one assistant message. The one reader of the format: the upload check and ingest both call
`check_preference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.data.chat import ChatExample, chat_example, turn_end
from tuneops.data.templates import check_messages

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

KEYS = ("input", "preferred_output", "non_preferred_output")


@dataclass(frozen=True)
class PreferenceRecord:
    """One preference example: the conversation so far, and the reply preferred over the other."""

    messages: list[dict[str, object]]
    chosen: str
    rejected: str
    tools: list[object] | None = None


def is_preference(record: object) -> bool:
    """Whether a JSON line is in the preference format (it has `preferred_output`), to tell files apart."""
    return isinstance(record, dict) and "preferred_output" in record


def _reply(record: dict[str, object], key: str) -> str:
    output = record.get(key)
    if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict):
        raise ValueError(f"`{key}` must be a list of exactly one assistant message")
    message = output[0]
    if message.get("role") != "assistant":
        raise ValueError(f"`{key}[0].role` must be 'assistant', not {message.get('role')!r}")
    if not isinstance(message.get("content"), str):
        raise ValueError(f"`{key}[0].content` must be a string")
    return message["content"]


def check_preference(record: object) -> PreferenceRecord:
    """A preference line as a PreferenceRecord; ValueError naming the first field that is wrong."""
    if not isinstance(record, dict):
        raise ValueError("a preference example must be a JSON object")
    missing = [k for k in KEYS if k not in record]
    if missing:
        named = ", ".join(f"`{k}`" for k in missing)
        raise ValueError(f"missing {named} (the preference format has {', '.join(KEYS)})")
    unknown = sorted(set(record) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (the preference format has {', '.join(KEYS)})")
    given = record["input"]
    if not isinstance(given, dict) or "messages" not in given:
        raise ValueError("`input` must be an object with `messages`")
    try:
        messages = check_messages(given["messages"])
    except ValueError as exc:
        raise ValueError(f"input.{exc}") from None
    if messages[-1]["role"] == "assistant":
        raise ValueError("input.messages must end before the reply (its last message is not the assistant's)")
    chosen, rejected = _reply(record, "preferred_output"), _reply(record, "non_preferred_output")
    if chosen == rejected:
        raise ValueError("preferred_output and non_preferred_output are the same reply: nothing to prefer")
    tools = given.get("tools")
    return PreferenceRecord(messages, chosen, rejected, tools or None)


# ingest's rows of preference data: the generation pair (prompt, completion = the preferred reply) plus `rejected`
PREFERENCE_COLUMNS = ["prompt", "completion", "source_text", "rejected"]


def _through_turn_end(completion: str, end: str) -> str:
    """A rendered reply cut after its end of turn (ChatML's "<|im_end|>", without the newline between turns): what
    the model writes before it stops, and what TRL would otherwise end with a second eos."""
    cut = completion.rfind(end) if end else -1
    return completion[: cut + len(end)] if cut >= 0 else completion


def preference_row(tokenizer: PreTrainedTokenizerBase, record: PreferenceRecord) -> tuple[str, str, str, str]:
    """prompt (input.messages, and input.tools, with the generation prompt), completion and rejected (each reply
    through the template's end of turn) and the user's last message, rendered by the model's chat template as chat
    data is."""

    def example(reply: str) -> ChatExample:  # input.tools rendered by a template that renders them, as chat data's
        return chat_example(tokenizer, [*record.messages, {"role": "assistant", "content": reply}], tools=record.tools)

    chosen, rejected = example(record.chosen), example(record.rejected)
    if chosen.prompt != rejected.prompt:  # a template that renders the prompt after the reply (it would not train)
        raise ValueError("the chat template renders the prompt differently before the two replies")
    end = turn_end(tokenizer)
    return (
        chosen.prompt,
        _through_turn_end(chosen.completion, end),
        chosen.user_text,
        _through_turn_end(rejected.completion, end),
    )


def has_preferences(df: pd.DataFrame) -> bool:
    """Whether a source's rows are preference data (a JSONL with `preferred_output`)."""
    return "preferred_output" in df.columns


def preference_rows(df: pd.DataFrame, origin: str, tokenizer: PreTrainedTokenizerBase) -> pd.DataFrame:
    """A preference JSONL's rows (as the source reader gives them) as prompt/completion/rejected rows;
    a bad line is a UserError naming the file, the line and the field."""
    import pandas as pd  # the upload check reads single records: no pandas there

    rows = []
    for i, raw in enumerate(df.to_dict("records")):
        record = {k: v for k, v in raw.items() if not (isinstance(v, float) and v != v)}  # keys of other lines: NaN
        try:
            rows.append(preference_row(tokenizer, check_preference(record)))
        except ValueError as exc:
            raise UserError(f"{origin}: line {i + 1}: {exc}") from None
    return pd.DataFrame(rows, columns=PREFERENCE_COLUMNS).astype("string")
