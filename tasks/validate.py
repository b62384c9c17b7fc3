"""Stage `validate`: Great Expectations checks of label balance and text quality, with Data Docs.

    python -m tasks.validate          (dvc.yaml runs it)

Generation data (task: generation) is checked as prompt/completion pairs instead: OpenAI's prepare_data checks
(separator, stop sequences, leading space, duplicates, lengths, ...), thresholds in validate.generation.

params: task, data.labels, generation.stop, validate
reads:  data/interim
writes: reports/data_quality (GX Data Docs: every expectation with its observed value; open index.html),
        reports/data_quality.json (one record per check),
        reports/data_review.html (the page to review: self-contained, so it reads offline too),
        reports/data_quality_verdict.json (only when no `error` check failed; tokenize requires it)

The verdict file holds the verdict alone, so a changed threshold that does not flip it reruns nothing
downstream. A failed `error` check stops with each failure listed; the reports stay for people to read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tuneops.config.checks import ValidateParams
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.config.paths import (
    DATA_DOCS_DIR,
    DATA_DOCS_INDEX,
    DATA_QUALITY_PATH,
    DATA_VERDICT_PATH,
    INTERIM_DIR,
    MANIFEST_PATH,
    REVIEW_PAGE_PATH,
)
from tuneops.config.records import DataVerdict, QualityRecord
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.splits import read_splits
from tuneops.io.files import remove, sha256_file, staged_dir, write_json, write_text
from tuneops.quality.generation_suites import run_generation_checks
from tuneops.quality.review_page import render, shares_by_split
from tuneops.quality.suites import add_plain_index, run_checks, table

log = logging.getLogger("tuneops.validate")


def validate(
    params: ValidateParams,
    labels: list[str],
    interim_dir: Path = INTERIM_DIR,
    docs_dir: Path = DATA_DOCS_DIR,
    report_path: Path = DATA_QUALITY_PATH,
    verdict_path: Path = DATA_VERDICT_PATH,
    review_path: Path | None = None,
    *,
    task: str = "classification",
    stop: Sequence[str] = (),
) -> list[QualityRecord]:
    """Check the ingested splits; raise UserError listing the failed `error` checks.

    The review page goes to `review_path`, by default beside `report_path` (reports/data_review.html), so a
    caller that moves the report elsewhere (a test's tmp_path) never writes into the project's reports/.
    `task` generation checks prompt/completion pairs; `stop` is generation.stop, what completions end with."""
    review_path = review_path or report_path.with_name(REVIEW_PAGE_PATH.name)
    remove(verdict_path)  # no verdict survives a run that does not pass
    manifest = interim_dir / MANIFEST_PATH.name
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found (run `dvc repro ingest` first)")
    frames = read_splits(interim_dir)
    with staged_dir(docs_dir) as staging:
        if task == "generation":
            records = run_generation_checks(frames, params, staging, stop)
        else:
            records = run_checks(frames, params, labels, staging)
        add_plain_index(staging, records)
    write_json(report_path, records)
    index = docs_dir / DATA_DOCS_INDEX.name
    # Written before a failed error check raises: the page is where a person reads why the run stopped.
    docs_href = Path(os.path.relpath(index.resolve(), review_path.resolve().parent)).as_posix()
    shares = shares_by_split(frames, labels) if task != "generation" else {}  # pairs have no labels to share
    write_text(review_path, render(records, shares, docs_href))
    log.info("data quality (review: %s; Data Docs: %s)\n%s", review_path, index, table(records))
    for r in records:
        if not r.passed and r.severity == "warning":
            log.warning("warning: %s", r.line())
    failed = [r for r in records if not r.passed and r.severity == "error"]
    if failed:
        listed = "; ".join(r.line() for r in failed)
        raise UserError(f"data quality failed {len(failed)} error check(s): {listed}. See {review_path} or {index}")
    write_json(verdict_path, DataVerdict(passed=True, manifest_sha256=sha256_file(manifest)))
    return records


def main() -> None:
    params = load_params(stage_parser(__doc__).parse_args().params)
    stop = params.generation.stop if params.task == "generation" else ()
    validate(params.validate_, params.data.labels, task=params.task, stop=stop)


if __name__ == "__main__":
    run_main(main)
