"""Files never half-written: typed records round-trip, a missing or malformed one is one line, a full disk is said."""

from __future__ import annotations

import pytest

from tuneops.config.errors import UserError
from tuneops.config.records import GateCheck, GateVerdict, QualityRecord
from tuneops.io.files import disk_full, read_json, said_when_disk_full, write_json


def test_a_full_disk_is_said_as_such(tmp_path):
    with pytest.raises(OSError) as info, open("/dev/full", "w") as full:
        full.write("x" * 10_000)
        full.flush()
    assert disk_full(info.value, tmp_path)
    full_line = r"no space left on device while writing .*: free some space"
    with pytest.raises(UserError, match=full_line), said_when_disk_full(tmp_path, "it resumes"):
        raise info.value
    assert not disk_full(RuntimeError("unexpected pos 704 vs 598"), tmp_path)  # plenty of space here: not a full disk


def test_a_record_round_trips_through_its_file(tmp_path):
    verdict = GateVerdict(
        verdict="failed", checks=[GateCheck(check="min_accuracy", observed=0.3, threshold=0.45, passed=False)]
    )
    write_json(tmp_path / "gate.json", verdict)
    assert read_json(tmp_path / "gate.json", GateVerdict) == verdict
    assert [c.check for c in read_json(tmp_path / "gate.json", GateVerdict).failed] == ["min_accuracy"]


def test_a_list_of_records_round_trips(tmp_path):
    rec = QualityRecord(
        check="c", suite="s", split="train", severity="error", passed=True, observed=1, threshold=2, examples=[]
    )
    write_json(tmp_path / "dq.json", [rec, rec])
    assert read_json(tmp_path / "dq.json", list[QualityRecord]) == [rec, rec]


def test_a_field_missing_or_renamed_names_the_file_and_the_field(tmp_path):
    (tmp_path / "gate.json").write_text('{"verdict": "passed", "results": []}')
    with pytest.raises(UserError, match=r"gate\.json: checks: Field required") as info:
        read_json(tmp_path / "gate.json", GateVerdict)
    assert "\n" not in str(info.value)


def test_a_missing_file_says_which_stage_to_run(tmp_path):
    with pytest.raises(UserError, match=r"gate\.json: not found \(run the stage that writes it first"):
        read_json(tmp_path / "gate.json", GateVerdict)


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    write_json(tmp_path / "a.json", {"x": 2})
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_written_files_are_readable_like_any_new_file(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
