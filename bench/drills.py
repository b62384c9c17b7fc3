"""The fault drills of tests/reliability (and the review page's offline check), as a table.

    python bench/drills.py            (minutes on 2 cores; the full-disk drill needs root to mount a tmpfs)
    python bench/drills.py tests/reliability/test_job_drills.py     (some of them)

Each drill reproduces a fault as it happened (a full disk mid-checkpoint, a dead tracking server, a planted
model with its own code, a corrupted model file, retweets in a single file, the review page offline; a worker
killed mid-training, `tuneops serve` and the Prefect server restarted mid-job, a job creation whose answer was
lost) and asserts the recovery and that nothing the user had was lost. Prints: drill | recovered | data lost |
time to recover (what the drill measured with pytest's `record_property("time_to_recover_s", seconds)`; "-" where
it measured none).
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
        self.rows: list[tuple[str, str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.rows.append((report.nodeid, report.outcome, recovery_time(report.user_properties)))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.docs = {item.nodeid: (item.obj.__doc__ or item.name).strip().splitlines()[0] for item in items}


def recovery_time(properties: list[tuple[str, object]]) -> str:
    """The drill's own `time_to_recover_s`, as "12.3 s"; "-" where it recorded none."""
    seconds = dict(properties).get("time_to_recover_s")
    return "-" if seconds is None else f"{float(seconds):.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drills", nargs="*", default=DRILLS, help="test files or ids (default: every drill)")
    outcomes = Outcomes()
    pytest.main(
        ["-q", "-p", "no:cacheprovider", *[str(ROOT / d) for d in parser.parse_args().drills]],
        plugins=[outcomes],
    )
    width = max((len(outcomes.docs.get(n, n)) for n, _, _ in outcomes.rows), default=10)
    print(f"\n{'drill':<{width}} | recovered | data lost             | time to recover")
    print(f"{'-' * width}-|-----------|-----------------------|----------------")
    for nodeid, outcome, took in outcomes.rows:
        recovered = {"passed": "yes", "skipped": "skipped"}.get(outcome, "NO")
        lost = {"passed": "none", "skipped": "-"}.get(outcome, "see the failure above")
        print(f"{outcomes.docs.get(nodeid, nodeid):<{width}} | {recovered:<9} | {lost:<21} | {took}")
    sys.exit(0 if all(o in ("passed", "skipped") for _, o, _ in outcomes.rows) else 1)


if __name__ == "__main__":
    main()
