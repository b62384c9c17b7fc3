"""The check of a fine-tuning upload (POST /v1/files, purpose `fine-tune`): every format OpenAI fine-tuning takes.

A file holds one format, the one of its first example: prompt/completion (`{"prompt", "completion"}`), chat
(`{"messages", "tools"?, "parallel_tool_calls"?}`) or preference (DPO: `{"input", "preferred_output",
"non_preferred_output"}`, tuneops.data.preference). One streaming pass reads it line by line, so the work is
bounded by the file however large: each line is parsed, given its format and checked alone (chat and preference
lines are rendered with the chat template a job will use, params.yaml's model's); the first MAX_REPORTED line
problems are kept word for word, the rest counted. A prompt/completion file that passes then gets prepare-data's
whole-file checks (tuneops/quality) when it is at most WHOLE_FILE_CHECK_BYTES: they read every pair into memory, so
a larger upload is left to the job's prepare-data stage, which runs them all the same (a warning says so), and the
server's memory stays flat whatever is uploaded.

What a job would refuse is an error (the file's status "error", the job failing at validating_files); advice is a
warning, which leaves the status "processed". Both go to the file object's `status_details` (OpenAI's field for
why a file failed validation; it has no other), errors first, each warning starting "warning:".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tuneops.config.errors import UserError
from tuneops.data.chat import chat_example
from tuneops.data.preference import KEYS as PREFERENCE_KEYS
from tuneops.data.preference import check_preference, is_preference
from tuneops.data.templates import check_messages

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tuneops.quality.reading import ChatTokenizer

Format = Literal["prompt/completion", "chat", "preference"]
Messages = list[dict[str, object]]

MIN_EXAMPLES = 10  # OpenAI refuses a fine-tuning file with fewer
RECOMMENDED_EXAMPLES = 50  # OpenAI: "we recommend starting with 50 well-crafted demonstrations" (50 to 100)
MAX_REPORTED = 20  # line problems kept word for word: enough to fix a file by, never the whole file again
# prepare-data's checks hold every pair in pandas and tokenize each one: work and memory that grow with the file,
# so past this size they are left to the job (its prepare-data stage runs them all the same)
WHOLE_FILE_CHECK_BYTES = 64 << 20
PAIR_KEYS = ("prompt", "completion")
CHAT_KEYS = ("messages", "tools", "parallel_tool_calls")
DESCRIBED: dict[Format, str] = {
    "prompt/completion": "prompt/completion (`prompt`, `completion`)",
    "chat": "chat (`messages`)",
    "preference": "preference (`input`, `preferred_output`, `non_preferred_output`)",
}
FORMATS = "; ".join(DESCRIBED.values())

# Probes of what a chat template renders: names no template writes unless it renders what carries them.
PROBE_TOOL = "tuneops_probe_tool"
PROBE_CALL = "tuneops_probe_call"


@dataclass
class FileCheck:
    """What the check found: errors (a job would refuse the file) and warnings (advice)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> Literal["processed", "error"]:
        return "error" if self.errors else "processed"

    @property
    def details(self) -> str | None:
        """`status_details`: the errors, then the warnings, each one line."""
        return "; ".join([*self.errors, *(f"warning: {w}" for w in self.warnings)]) or None


class Template:
    """The chat template a job renders with (params.yaml's model), loaded on first use, and what it renders."""

    def __init__(self, load: Callable[[], ChatTokenizer]) -> None:
        self._load = load

    @cached_property
    def loaded(self) -> ChatTokenizer:
        return self._load()

    @property
    def model(self) -> str:
        return self.loaded.model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None:
        return self.loaded.tokenizer

    def render(self, messages: Messages, tools: list[object] | None = None) -> str:
        """The conversation as the template writes it; ValueError when the template refuses it."""
        from jinja2.exceptions import TemplateError  # transformers renders chat templates with jinja2

        assert self.tokenizer is not None
        try:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except TemplateError as exc:  # the template's own refusal (`raise_exception`)
            raise ValueError(f"the chat template of {self.model} refused this line: {exc}") from None

    def _rendered(self, messages: Messages, tools: list[object] | None = None) -> str | None:
        try:
            return self.render(messages, tools)
        except Exception:  # noqa: BLE001 - a template that fails on a probe in any way does not render what it probes
            return None

    @cached_property
    def renders_tools(self) -> bool:
        """Whether the template writes a conversation's tools and its tool calls (a template that ignores `tools`
        would train the model to call functions it was never shown)."""
        tool = {"type": "function", "function": {"name": PROBE_TOOL, "parameters": {"type": "object"}}}
        call = {"id": "call_1", "type": "function", "function": {"name": PROBE_CALL, "arguments": "{}"}}
        talk: Messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ]
        shown, called = self._rendered(talk[:1], [tool]), self._rendered(talk, [tool])
        return shown is not None and PROBE_TOOL in shown and called is not None and PROBE_CALL in called


def line_format(record: dict[str, object]) -> Format | None:
    """The format a line is in, or None when it is in none."""
    if is_preference(record) or any(key in record for key in PREFERENCE_KEYS):
        return "preference"
    if "messages" in record:
        return "chat"
    if any(str(key).lower() in PAIR_KEYS for key in record):
        return "prompt/completion"
    return None


def check_pair(record: dict[str, object], _: Template) -> None:
    """A prompt/completion line's own shape (its content is prepare-data's whole-file checks')."""
    lower = {str(key).lower(): value for key, value in record.items()}
    missing = [key for key in PAIR_KEYS if key not in lower]
    if missing:
        raise ValueError(f"no `{missing[0]}` (a prompt/completion line has `prompt` and `completion`)")
    for key in PAIR_KEYS:
        if isinstance(lower[key], (list, dict)):
            raise ValueError(f"`{key}` is a {type(lower[key]).__name__}, expected text")


def check_chat(record: dict[str, object], template: Template) -> None:
    """A chat line: OpenAI's message rules, something to learn, and rendered by the template a job will use."""
    unknown = sorted(set(record) - set(CHAT_KEYS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (a chat line has {', '.join(CHAT_KEYS)})")
    tools = check_tools(record)
    if tools is None and calls_tools(record["messages"]):
        raise ValueError("the line calls tools (`tool_calls`, `tool` messages) but declares no `tools`")
    messages = check_messages(record["messages"], tools=tools is not None)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's reply (the completion a job learns)")
    if not any(m["role"] == "assistant" and m.get("weight", 1) == 1 for m in messages):
        raise ValueError("no assistant message to learn (at least one assistant message without weight 0)")
    check_rendered(messages, tools, template)


def calls_tools(messages: object) -> bool:
    """Whether a conversation holds tool calls or their results (OpenAI's function-calling format)."""
    given = messages if isinstance(messages, list) else []
    return any(isinstance(m, dict) and ("tool_calls" in m or m.get("role") == "tool") for m in given)


def check_tools(record: dict[str, object]) -> list[object] | None:
    """The line's `tools` in OpenAI's shape (`{"type": "function", "function": {"name", ...}}`), or None."""
    tools = record.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list) or not tools:
        raise ValueError("tools must be a non-empty list of functions")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., ...}}}}')
    return tools


def check_preference_line(record: dict[str, object], template: Template) -> None:
    """A preference line (tuneops.data.preference), rendered with its preferred reply as a job would."""
    example = check_preference(record)
    reply = {"role": "assistant", "content": example.chosen}
    check_rendered([*example.messages, reply], example.tools, template)


def check_rendered(messages: Messages, tools: list[object] | None, template: Template) -> None:
    """What the chat template can write: the line's tools, and this very conversation (rendered as training
    renders it, which also finds the turns a job trains on; a developer message is a system one by then,
    templates.check_messages). Skipped when no template could be loaded (the check then warns once)."""
    if template.tokenizer is None:
        return
    if tools is not None and not template.renders_tools:
        raise ValueError(
            f"tools: the chat template of {template.model} does not render tools; remove them or use a model "
            "whose template does"
        )
    chat_example(template.tokenizer, messages, tools)


CHECKS: dict[Format, Callable[[dict[str, object], Template], None]] = {
    "prompt/completion": check_pair,
    "chat": check_chat,
    "preference": check_preference_line,
}


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, object] | str]]:
    """Each non-blank line's number and its JSON object, or why it is none; one line in memory at a time."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, "bytes that are not UTF-8; re-save the file as UTF-8"
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, f"not JSON ({exc.msg} at column {exc.colno})"
                continue
            yield number, record if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"


@dataclass
class Scan:
    """One pass over a file: its format (its first example's), its examples, and the problems of its lines."""

    template: Template
    format: Format | None = None
    first: int = 0
    examples: int = 0
    other: tuple[int, Format] | None = None  # the first line of another format
    others: int = 0
    problems: list[str] = field(default_factory=list)
    unreported: int = 0

    def problem(self, number: int, why: str) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(f"line {number}: {why}")
        else:
            self.unreported += 1

    def line(self, number: int, record: dict[str, object] | str) -> None:
        kind = line_format(record) if isinstance(record, dict) else None
        if isinstance(record, str) or kind is None:
            self.problem(number, record if isinstance(record, str) else f"in no format OpenAI takes ({FORMATS})")
            return
        if self.format is None:
            self.format, self.first = kind, number
        if kind != self.format:  # one other-format line is reported (where the file changes), the rest counted
            self.other, self.others = self.other or (number, kind), self.others + 1
            return
        self.examples += 1
        try:
            CHECKS[kind](record, self.template)
        except ValueError as exc:
            self.problem(number, str(exc))

    def result(self) -> FileCheck:
        found = FileCheck(errors=[*self.file_errors(), *self.problems])
        if self.unreported:
            found.errors.append(f"and {self.unreported} more line problem(s) like these")
        if MIN_EXAMPLES <= self.examples < RECOMMENDED_EXAMPLES:
            found.warnings.append(
                f"{self.examples} examples: OpenAI recommends at least {RECOMMENDED_EXAMPLES} (50 to 100 to start; "
                "quality tends to grow with every doubling)"
            )
        if self.template.tokenizer is None and self.format in ("chat", "preference"):
            loaded = self.template.loaded
            found.warnings.append(
                f"the lines were not rendered with the chat template of {loaded.model} (it could not be loaded: "
                f"{loaded.why_not}); a job renders them when it starts"
            )
        return found

    def file_errors(self) -> list[str]:
        errors = []
        if self.other is not None and self.format is not None:
            number, kind = self.other
            errors.append(
                f"line {number}: a {DESCRIBED[kind]} line in a {self.format} file (line {self.first} is one): a "
                f"file holds one format ({self.others} line(s) of another)"
            )
        if self.examples < MIN_EXAMPLES:
            errors.append(f"{self.examples} example(s): OpenAI's fine-tuning takes at least {MIN_EXAMPLES}")
        return errors


def check_lines(path: Path, template: Template) -> Scan:
    scan = Scan(template)
    for number, record in json_lines(path):
        scan.line(number, record)
    return scan


def check_pairs_file(path: Path, params_path: Path) -> list[str]:
    """prepare-data's error-severity checks (tuneops/quality/checks.py), lengths counted in the tokens of
    params.yaml's model: duplicates, empty completions, separators, lengths across the whole file."""
    from tuneops.quality.prepare import check_all  # start-up: pandas and numpy, only once a file is checked
    from tuneops.quality.reading import model_lengths, read_pairs  # start-up: as the line above

    try:
        pairs = read_pairs(path)
    except UserError as exc:  # what the line pass let through (a CSV-like quirk): one line naming the line
        return [str(exc).removeprefix(f"{path}: ")]
    lengths, _ = model_lengths(None, None, params_path)
    return [f"{f.record.check}: {f.record.message}" for f in check_all(pairs, lengths) if f.record.verdict == "error"]


def check_training_file(path: Path, params_path: Path) -> FileCheck:
    """Why a fine-tune file cannot be trained on (errors) and what would train it better (warnings). The one
    call site: FileStore.add."""
    from tuneops.quality.reading import chat_tokenizer  # start-up: transformers, only for a chat template

    scan = check_lines(path, Template(lambda: chat_tokenizer(params_path)))
    found = scan.result()
    if scan.format == "prompt/completion" and not scan.problems and scan.other is None:  # well-formed lines
        if path.stat().st_size <= WHOLE_FILE_CHECK_BYTES:
            found.errors.extend(check_pairs_file(path, params_path))
        else:
            found.warnings.append(
                f"over {WHOLE_FILE_CHECK_BYTES >> 20} MB: duplicates and lengths in tokens are checked when a job "
                "prepares the data, not at upload"
            )
    return found
