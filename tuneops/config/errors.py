"""The two kinds of failure a user meets, and the exit codes that tell them apart to DVC and Prefect."""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the retrain flow retries only this exit code
EXIT_PAUSED = 76  # training stopped for a pause asked for (a job's), its checkpoint saved: suspend, do not fail


class UserError(Exception):
    """A mistake in the user's data, params or environment: reported as one line, no traceback."""


class TransientError(Exception):
    """A failure worth retrying (the Hub or a network file system), unlike a mistake in the data."""
