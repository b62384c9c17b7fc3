"""Is the Hugging Face Hub reachable? Asked once, in a few seconds, before a Hub client retries for half a minute.

huggingface_hub and datasets retry a failed name resolution for ~25 s before giving up, and then say little
about what to do. A machine without the Hub should hear at once how to go on without it.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlparse

from tuneops.config.errors import TransientError, UserError

PROBE_TIMEOUT_S = 3.0
WAYS_ON = (
    "point data.source and model.name at local files or directories (see README: Running on local files), "
    "or see every stage work offline with `make demo`"
)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def offline_switch() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.cache  # asked once a process: the tokenizer and the model ask about the same Hub
def _connect(host: str, port: int) -> None:
    """Resolve and connect, or raise. getaddrinfo has no timeout of its own, so a hung resolver is left in a
    daemon thread (a pool's worker would be joined at exit, holding the process up as long as it hangs)."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 1)
    if not outcome:
        raise TimeoutError("name resolution timed out")
    if outcome[0] is not None:
        raise outcome[0]


def probe(what: str) -> None:
    """Raise at once when `what` (a dataset or model id) cannot be fetched from the Hub.

    No name resolution (an offline machine): UserError, since retrying cannot help. A refused or timed-out
    connection: TransientError, which the retrain flow retries.
    """
    if offline_switch():
        raise UserError(f"{what}: the Hub is switched off (HF_HUB_OFFLINE=1); {WAYS_ON}")
    url = urlparse(endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        _connect(host, port)
    except socket.gaierror:
        raise UserError(
            f"{what}: the Hugging Face Hub ({host}) is unreachable: no name resolution; {WAYS_ON}"
        ) from None
    except OSError as exc:  # TimeoutError is one
        reason = " ".join(str(exc).split()) or "timed out"
        raise TransientError(f"{what}: the Hugging Face Hub ({host}) is unreachable ({reason}); {WAYS_ON}") from None
