"""A loaded version's generation settings: its tags', else the fallback's."""

from __future__ import annotations

from tuneops.config.params import ChatTemplate
from tuneops.registry.served import GenerationSettings, generation_settings

CHAT = ChatTemplate(system="{content}\n", user="Q: {content}\n", assistant="A: {content}\n")


def test_generation_settings_come_from_the_tags_else_the_fallback():
    fallback = GenerationSettings(stop=["###"], max_new_tokens=64, chat_template=CHAT)
    tags = {"tuneops.stop": '["\\n"]', "tuneops.max_new_tokens": "8"}
    assert generation_settings(tags, fallback) == GenerationSettings(["\n"], 8, CHAT)  # template: the fallback's
    assert generation_settings({}, fallback) is fallback
    assert generation_settings({}, None) is None
