"""Whether one more request joins the batcher's queue: a cap on the tokens it holds, so 64 clients sending prompts
at the context limit get a 429 with retry-after instead of a queue (and a wait) that grows without end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RETRY_AFTER_S = 1  # a call of 32 rows x 16 tokens takes ~1.6 s here (batching._call): a slot frees within about that


class Overloaded(RuntimeError):
    """The queue holds too many tokens for one more request: the client retries after `retry_after_s`."""

    def __init__(self, queued: int, asked: int, cap: int, retry_after_s: int = RETRY_AFTER_S) -> None:
        self.queued, self.asked, self.cap, self.retry_after_s = queued, asked, cap, retry_after_s
        super().__init__(
            f"the server is busy: {queued} tokens are queued, and this request's {asked} would pass its limit of "
            f"{cap}; retry after {retry_after_s} s"
        )


def admits(queued: int, asked: int, cap: int | None) -> bool:
    """Whether a request of `asked` tokens joins a queue holding `queued`: within the cap, or alone (a request
    larger than the cap on its own would otherwise never be served)."""
    return cap is None or queued == 0 or queued + asked <= cap


def prompt_lengths(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str | Sequence[int]]) -> list[int]:
    """Each prompt's tokens: a text's as the tokenizer counts them (one call for all), token ids as given."""
    texts = [p for p in prompts if isinstance(p, str)]
    counted = iter(len(ids) for ids in tokenizer(texts)["input_ids"]) if texts else iter(())
    return [next(counted) if isinstance(p, str) else len(p) for p in prompts]
