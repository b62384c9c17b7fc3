"""The drills' memory probe: how far this process's RSS rose above where it started, sampled while work ran."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

EVERY_S = 0.02  # 50 samples a second: a spike that lasts a decoding step or a 1 MiB chunk is seen


@contextmanager
def rss_growth() -> Iterator[list[float]]:
    """Yields a one-item list that holds, once the block ends, the peak RSS growth in bytes during the block."""
    process = psutil.Process()
    start, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(EVERY_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    grown = [0.0]
    try:
        yield grown
    finally:
        done.set()
        sampler.join()
        grown[0] = max(0, peak[0] - start)
