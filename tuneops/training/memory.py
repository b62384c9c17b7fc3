"""Memory a CPU training run hands back: glibc keeps freed pages resident, so a long run's peak grows."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class ReleaseFreedMemory(TrainerCallback):
    """Hand the memory freed during a step back to the OS at its end (glibc's malloc_trim).

    glibc keeps freed heap pages resident and reuses them only for allocations that fit, so batches of
    different lengths leave holes that pile up in the peak. bench/train_speed.py: ~0.1 GB less peak RSS
    for ~5% fewer samples/s.
    """

    def __init__(self, trim: Callable[[int], int]) -> None:
        self.trim = trim

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.trim(0)


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
