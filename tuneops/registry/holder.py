"""Following an alias: the version it points at, checked at most every `refresh_seconds`, a moved alias's version
swapped in once loaded (and, with serve.engine: vllm, once its engine is ready) while other requests keep answering
with the old one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tuneops.config.runner import redact
from tuneops.registry.served import Served

log = logging.getLogger("tuneops.serve")

VersionLookup = Callable[[], str | None]  # the version the alias points at now, None when it points nowhere
VersionLoader = Callable[[str], Served]
# whether a loaded version's engine answers yet (serve.engine: vllm starts a process for it, 80-110 s); the alias
# switches to it only then, so no request waits on a start
EngineReady = Callable[[Served], bool]


class ModelHolder:
    """The version an alias points at. One request at a time checks the alias (at most every `refresh_seconds`)
    and loads a moved alias's version; the others keep answering with the current one meanwhile, and a failed
    lookup or load keeps it too."""

    def __init__(
        self,
        served: Served,
        lookup: VersionLookup | None = None,
        load: VersionLoader | None = None,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        ready: EngineReady | None = None,
    ) -> None:
        if (lookup is None) != (load is None):
            raise ValueError("following an alias needs both a version lookup and a loader")
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be >= 0, not {refresh_seconds}")
        self._served, self._lookup, self._load = served, lookup, load
        self._refresh_seconds, self._clock, self._ready = refresh_seconds, clock, ready
        self._warming: str | None = None  # the version loaded whose engine is not ready yet
        self._lock = threading.Lock()
        self._checking = False
        self._checked_at = clock()

    @property
    def served(self) -> Served:
        """The version answering now, without checking the alias."""
        return self._served

    def current(self) -> Served:
        """The version to answer this request with, after the alias check when one is due."""
        if self._lookup is None or not self._claim_check():
            return self._served
        try:
            self._check()
        finally:
            with self._lock:
                self._checking = False
        return self._served

    def _claim_check(self) -> bool:
        """True for the one request that does a due check; a lookup per request would hammer the registry."""
        with self._lock:
            now = self._clock()
            if self._checking or now - self._checked_at < self._refresh_seconds:
                return False
            self._checking, self._checked_at = True, now
            return True

    def _check(self) -> None:
        old = self._served.info
        try:
            version = self._lookup()
        except Exception as exc:  # the registry being down must not take serving down with it
            log.warning("keeping version %s: looking up alias %s failed: %s", old.version, old.alias, _why(exc))
            return
        if version is None:
            log.warning("keeping version %s: alias %s points at no version", old.version, old.alias)
            return
        if version == old.version:
            return
        if version != self._warming:  # said once, not at every check while its engine starts
            log.info("alias %s moved from version %s to %s: loading it", old.alias, old.version, version)
        try:
            new = self._load(version)  # no lock held: other requests keep answering with the old version
        except Exception as exc:
            log.warning("keeping version %s: loading version %s failed: %s", old.version, version, _why(exc))
            return
        if self._ready is not None and not self._ready(new):
            if version != self._warming:
                log.info("keeping version %s until version %s's engine is ready", old.version, version)
                self._warming = version
            return
        self._warming = None
        self._served = new  # one reference swap: a request sees the old version or the new one, never a mix
        log.info("now serving %s", new.info.model_uri)


def _why(exc: BaseException) -> str:
    """An exception as one log line, with any credentials in a tracking URI masked."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}")
