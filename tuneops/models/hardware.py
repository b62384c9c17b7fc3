"""What the machine offers a model: threads, and whether bf16 is native (asked once)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


def set_threads(num_threads: int | None) -> int:
    """Use every core unless told otherwise (torch's default can be lower inside containers): by `num_threads`,
    or by OMP_NUM_THREADS (the variable every OpenMP program honours); under torchrun, each of the machine's
    LOCAL_WORLD_SIZE processes its share, so they do not fight over the cores."""
    share = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    told = os.environ.get("OMP_NUM_THREADS", "")
    threads = num_threads or (int(told) if told.isdigit() and int(told) > 0 else max(1, share))
    torch.set_num_threads(threads)
    return threads


@functools.cache  # the hardware does not change; serving asks on every request
def native_bf16() -> bool:
    """True where bf16 matmuls are fast: a CUDA GPU that has them, or a CPU with AMX or AVX512-BF16."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
