"""Freed memory handed back to the OS each step on a CPU, unless turned off."""

from __future__ import annotations

import pytest

from tuneops.training.memory import ReleaseFreedMemory, malloc_trim


def test_freed_memory_is_released_each_step_on_cpu_unless_turned_off(trainer_for, tmp_path):
    def releases(trainer) -> bool:
        return any(isinstance(cb, ReleaseFreedMemory) for cb in trainer.callback_handler.callbacks)

    if malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    assert releases(trainer_for(tmp_path / "on"))
    assert not releases(trainer_for(tmp_path / "off", release_freed_memory=False))
