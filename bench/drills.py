"""The fault drills of tests/reliability (and the review page's offline check), as a table.

    python bench/drills.py            (minutes on 2 cores; the full-disk drill needs root to mount a tmpfs)

Each drill reproduces a fault as it happened (a full disk mid-checkpoint, a dead tracking server, a planted
model with its own code, a corrupted model file, retweets in a single file, the review page offline) and
asserts the recovery and that nothing the user had was lost. Prints: drill | recovered | data lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRILLS = ["tests/reliability", "tests/data/test_review_page.py::test_chromium_offline_shows_the_failed_check_as_failed"]


class Outcomes:
    """A pytest plugin that keeps each drill's first docstring line and its outcome."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.rows.append((report.nodeid, report.outcome))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.docs = {item.nodeid: (item.obj.__doc__ or item.name).strip().splitlines()[0] for item in items}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    outcomes = Outcomes()
    pytest.main(["-q", "-p", "no:cacheprovider", *[str(ROOT / d) for d in DRILLS]], plugins=[outcomes])
    width = max((len(outcomes.docs.get(n, n)) for n, _ in outcomes.rows), default=10)
    print(f"\n{'drill':<{width}} | recovered | data lost")
    print(f"{'-' * width}-|-----------|----------")
    for nodeid, outcome in outcomes.rows:
        recovered = {"passed": "yes", "skipped": "skipped"}.get(outcome, "NO")
        lost = {"passed": "none", "skipped": "-"}.get(outcome, "see the failure above")
        print(f"{outcomes.docs.get(nodeid, nodeid):<{width}} | {recovered:<9} | {lost}")
    sys.exit(0 if all(o in ("passed", "skipped") for _, o in outcomes.rows) else 1)


if __name__ == "__main__":
    main()
