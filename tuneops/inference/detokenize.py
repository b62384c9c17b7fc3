"""A row's completion text as it grows: decoded a token at a time, cut at the first stop sequence, and released
(for streaming) only once no stop sequence can still claim it.

Why not `tokenizers.decoders.DecodeStream`: it gives the same text mid-stream and costs 1 µs a token against
about 11 µs here (measured on this machine, 33 sequences x 32 tokens, GPT-2's and the sample's tokenizers), but
(1) it never returns a trailing half character: on the sample's tokenizer 18 of 99 random sequences ended
shorter than `tokenizer.decode` gives them, so it needs a full decode at the end anyway; (2) it raises on a
tokenizer that rewrites earlier text, where this waits for the next token; (3) it needs the Rust tokenizer
(`backend_tokenizer`), not any PreTrainedTokenizerBase; and (4) the 10 µs it saves a token is 0.2% of the
5.7 ms a generated token costs with GPT-2 small (bench/generate_speed.py --quick: 177 tokens/s), below the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CONTEXT_TOKENS = 5  # the prompt's tokens a completion's first decode sees (vLLM's INITIAL_..._OFFSET, 5 too)


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Where the earliest stop sequence begins in text[start:] (as an index into text), or None."""
    found = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(found) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop sequence, so cannot be sent yet."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class IncrementalText:
    """One row's completion text, decoded a token at a time, cut at the first stop sequence.

    Decoding only the last few tokens each step (vLLM's incremental detokenization): the window from the
    previous piece's first token gives tokenizers that merge across tokens (SentencePiece's leading space)
    their context, and a window whose text ends in U+FFFD waits for the rest of its UTF-8 character. The caller
    decodes every row's two windows in one `batch_decode` per step and hands them to `take`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: tuple[str, ...], context: Sequence[int] = ()) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        # the prompt's last tokens, decoded with the first new ones but never part of the text: SentencePiece
        # drops a word's leading space at the start of a decode (after "The dog ran to the", the token "▁park"
        # alone decodes to "park"); vLLM starts from the prompt's last 5 tokens alike
        self.ids: list[int] = list(context)[len(context) - CONTEXT_TOKENS :] if context else []
        self.context = len(self.ids)
        self.start, self.read = 0, self.context  # ids[start:read] is the last decoded piece; ids[read:] not yet
        self.text = ""
        self.sent = 0  # characters handed to on_text
        self.stopped = False

    def windows(self) -> tuple[list[int], list[int]]:
        return self.ids[self.start : self.read], self.ids[self.start :]

    def take(self, before: str, after: str, final: bool) -> None:
        """Add the text that the new tokens brought (`after` minus `before`, the two windows decoded)."""
        if self.read == len(self.ids):
            return  # no new token (the row ended on eos)
        if (after.endswith("\ufffd") and not final) or not after.startswith(before):
            if not final:
                return  # half a UTF-8 character (or a tokenizer that rewrites): wait for the next token
            before, after = self.text, self.completion()
            if not after.startswith(before):
                return  # cannot happen with byte-level BPE; never rewrite text already sent
        self.start, self.read = self.read, len(self.ids)
        scan_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=1) + 1)
        self.text += after[len(before) :]
        if (cut := find_stop(self.text, self.stops, scan_from)) is not None:
            self.text, self.stopped = self.text[:cut], True

    def completion(self) -> str:
        """Every new token decoded at once, after the prompt's tokens kept as context."""
        full = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        head = self.tokenizer.decode(self.ids[: self.context], skip_special_tokens=True)
        if full.startswith(head):
            return full[len(head) :]
        return self.tokenizer.decode(self.ids[self.context :], skip_special_tokens=True)

    def ready(self, final: bool) -> str:
        """The text that no stop sequence can claim any more and was not sent yet (all of it once final)."""
        end = len(self.text) if final or self.stopped else len(self.text) - held_back(self.text, self.stops)
        delta, self.sent = self.text[self.sent : end], max(self.sent, end)
        return delta
