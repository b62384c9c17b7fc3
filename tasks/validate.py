"""Stage `validate`: Great Expectations checks of label balance and text quality, with Data Docs.

    python -m tasks.validate          (dvc.yaml runs it)

params: data.labels, validate
reads:  data/interim
writes: reports/data_quality (GX Data Docs: every expectation with its observed value; open index.html),
        reports/data_quality.json (one record per check),
        reports/data_quality_verdict.json (only when no `error` check failed; tokenize requires it)

The verdict file holds the verdict alone, so a changed threshold that does not flip it reruns nothing
downstream. A failed `error` check stops with each failure listed; the report stays for people to read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuneops.errors import UserError
from tuneops.files import remove, sha256_file, staged_dir, write_json
from tuneops.params import ValidateParams, load_params
from tuneops.paths import (
    DATA_DOCS_DIR,
    DATA_DOCS_INDEX,
    DATA_QUALITY_PATH,
    DATA_VERDICT_PATH,
    INTERIM_DIR,
    MANIFEST_PATH,
)
from tuneops.quality import add_plain_index, run_checks, table
from tuneops.records import DataVerdict, QualityRecord
from tuneops.runner import run_main, stage_parser
from tuneops.splits import read_splits

log = logging.getLogger("tuneops.validate")


def validate(
    params: ValidateParams,
    labels: list[str],
    interim_dir: Path = INTERIM_DIR,
    docs_dir: Path = DATA_DOCS_DIR,
    report_path: Path = DATA_QUALITY_PATH,
    verdict_path: Path = DATA_VERDICT_PATH,
) -> list[QualityRecord]:
    """Check the ingested splits; raise UserError listing the failed `error` checks."""
    remove(verdict_path)  # no verdict survives a run that does not pass
    manifest = interim_dir / MANIFEST_PATH.name
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found (run `dvc repro ingest` first)")
    with staged_dir(docs_dir) as staging:
        records = run_checks(read_splits(interim_dir), params, labels, staging)
        add_plain_index(staging, records)
    write_json(report_path, records)
    index = docs_dir / DATA_DOCS_INDEX.name
    log.info("data quality (report: %s)\n%s", index, table(records))
    for r in records:
        if not r.passed and r.severity == "warning":
            log.warning("warning: %s", r.line())
    failed = [r for r in records if not r.passed and r.severity == "error"]
    if failed:
        listed = "; ".join(r.line() for r in failed)
        raise UserError(f"data quality failed {len(failed)} error check(s): {listed}. See {index}")
    write_json(verdict_path, DataVerdict(passed=True, manifest_sha256=sha256_file(manifest)))
    return records


def main() -> None:
    params = load_params(stage_parser(__doc__).parse_args().params)
    validate(params.validate_, params.data.labels)


if __name__ == "__main__":
    run_main(main)
