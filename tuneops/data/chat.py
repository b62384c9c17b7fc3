"""Chat rendered by the model's own template, the same at training and at serving.

A tokenizer that ships a chat template (SmolLM2, Qwen, Llama: ChatML and its kin) renders every conversation with
it (`apply_chat_template`). One that has none (GPT-2) gets the template declared in params (generation.chat_template,
role by role) as the equivalent Jinja, set on the tokenizer: training saves that tokenizer with the model, so the
registered model carries the template it was trained with and any server (tuneops, vLLM, `transformers serve`)
renders it the same way.

Which tokens an assistant turn owns is found by rendering prefixes of the conversation (messages[:k] with the
generation prompt, then messages[:k+1]): it works for templates without `{% generation %}` tags, and a template
that renders an earlier turn differently once later turns follow (one that drops past reasoning, say) is refused,
because its masks would be wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneops.config.params import ChatTemplate
from tuneops.data.templates import check_messages, reply_parts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, object]]
_SENTINEL = "\u2063tuneops-reply\u2063"  # an assistant message no template changes, to see what surrounds a reply


def declared_template(chat: ChatTemplate) -> str:
    """The role templates of params as a Jinja chat template that renders exactly what they say.

    An assistant turn is its prefix (trailing spaces moved into the reply) + " " + the reply + its suffix, as
    tuneops has always written completions (GPT-2 reads " word" as one token); the generation prompt is that prefix.
    """
    prefix, suffix = reply_parts(chat)

    def literal(text: str) -> str:
        return json.dumps(text)  # a Jinja string literal: the same escapes as JSON

    system_pre, system_post = chat.system.split("{content}")
    user_pre, user_post = chat.user.split("{content}")
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        f"{{{{ {literal(prefix + ' ')} + message['content'].lstrip(' ') + {literal(suffix)} }}}}"
        "{% elif message['role'] == 'system' %}"
        f"{{{{ {literal(system_pre)} + message['content'] + {literal(system_post)} }}}}"
        "{% else %}"
        f"{{{{ {literal(user_pre)} + message['content'] + {literal(user_post)} }}}}"
        "{% endif %}{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {literal(prefix)} }}}}{{% endif %}}"
    )


def with_chat_template(tokenizer: PreTrainedTokenizerBase, declared: ChatTemplate) -> PreTrainedTokenizerBase:
    """The tokenizer with a chat template: its own when it ships one, else the one declared in params."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = declared_template(declared)
    return tokenizer


TEMPLATE_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")  # `weight` is tuneops', not the template's


def render(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    add_generation_prompt: bool = False,
    tools: list[object] | None = None,
) -> str:
    """The conversation as the model reads it (text; tokenised like any prompt, so special tokens are the text's);
    `tools`: the functions the conversation may call (OpenAI's `tools`), for a template that renders them."""
    from jinja2.exceptions import TemplateError  # transformers renders chat templates with jinja2

    plain = [{k: m[k] for k in TEMPLATE_FIELDS if k in m} for m in messages]
    try:
        return tokenizer.apply_chat_template(
            plain, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as exc:  # a template's own refusal (`raise_exception`: roles must alternate, say)
        raise ValueError(f"the model's chat template refused these messages: {exc}") from None


def turn_end(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the template writes after an assistant reply, without the whitespace between turns: ChatML's
    `<|im_end|>`, the declared template's suffix (`"\\n"`). Generation stops there."""
    rendered = render(tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}])
    after = rendered.split(_SENTINEL, 1)[1] if _SENTINEL in rendered else ""
    return after.rstrip() or after


@dataclass(frozen=True)
class ChatExample:
    """One conversation as training text: the prompt (everything before the last assistant reply, with the
    generation prompt), the completion (that reply through its end of turn), the character spans of the prompt
    that train too (earlier assistant replies), and whether the completion trains (`weight: 0` does not)."""

    prompt: str
    completion: str
    prompt_spans: list[tuple[int, int]]
    completion_weight: float
    user_text: str


def chat_example(
    tokenizer: PreTrainedTokenizerBase, messages: object, tools: list[object] | None = None
) -> ChatExample:
    """A training example from a conversation (and the `tools` it may call: OpenAI's function-calling examples);
    ValueError saying why when its assistant turns cannot be found."""
    messages = check_messages(messages, tools=tools is not None)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's reply (the completion to learn)")

    def rendered(part: Messages, add_generation_prompt: bool = False) -> str:
        return render(tokenizer, part, add_generation_prompt, tools)

    full = rendered(messages)
    spans: list[tuple[int, int, float]] = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = rendered(messages[:k], add_generation_prompt=True)
        end = rendered(messages[: k + 1])
        for what, text in ((f"messages[:{k}] with the generation prompt", start), (f"messages[:{k + 1}]", end)):
            if not full.startswith(text):
                raise ValueError(
                    f"the chat template renders {what} differently from the start of the whole conversation, so "
                    f"the tokens of assistant message {k} cannot be told apart (a template that rewrites earlier "
                    "turns cannot be trained on multi-turn data: keep one assistant reply per line)"
                )
        if len(end) <= len(start):
            raise ValueError(f"the chat template renders assistant message {k} as nothing")
        spans.append((len(start), len(end), float(message.get("weight", 1))))
    if not any(weight for _, _, weight in spans):
        raise ValueError("every assistant message has weight 0: nothing to learn")
    last_start, last_end, last_weight = spans[-1]
    users = [m["content"] for m in messages if m["role"] == "user"]
    return ChatExample(
        prompt=full[:last_start],
        completion=full[last_start:last_end],
        prompt_spans=[(s, e) for s, e, w in spans[:-1] if w],
        completion_weight=last_weight,
        user_text=str(users[-1]) if users else "",
    )
