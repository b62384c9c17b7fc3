"""Templates over a source's columns (chat: tests/unit/data/test_chat.py)."""

from __future__ import annotations

from tuneops.config.params import template_fields
from tuneops.data.templates import render


def test_templates_name_their_columns_and_render_rows():
    template = "{text}\nsentiment: {sentiment}\n\n###\n\n"
    assert template_fields(template) == ["text", "sentiment"]
    assert render(template, {"text": "so happy", "sentiment": "positive", "x": 1}) == (
        "so happy\nsentiment: positive\n\n###\n\n"
    )
