"""OpenAI's cursor pages: `after`, `limit` and whether more follow."""

from __future__ import annotations

import pytest

from tuneops.serve.finetuning.protocol import page


class Item:
    def __init__(self, id_: str) -> None:
        self.id = id_


def test_pages_follow_after_and_say_whether_more_follow():
    items = [Item(str(i)) for i in range(5)]
    first, more = page(items, None, 2)
    assert [i.id for i in first] == ["0", "1"] and more
    last, more = page(items, "3", 2)
    assert [i.id for i in last] == ["4"] and not more
    assert page(items, "4", 2) == ([], False)
    with pytest.raises(KeyError):
        page(items, "nope", 2)
