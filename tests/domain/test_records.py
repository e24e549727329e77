"""Persisted records read what earlier versions wrote, and write it back unchanged."""

import json
from pathlib import Path

import pytest

from app.domain.records import JobRecord, Manifest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.unit

MANIFESTS = sorted((FIXTURES / "career_models").glob("*/manifest.json"))


def test_a_job_file_written_before_the_move_reads_and_writes_back_byte_for_byte() -> None:
    # Written by the code of 7f2c7ca, when JobRecord lived in app/schemas/retrain.py.
    written = (FIXTURES / "job_records" / "current.json").read_text()
    job = JobRecord.model_validate_json(written)
    assert job.gate is not None and job.gate.active_model is not None
    assert job.config is not None and job.attempts == 1
    assert job.model_dump_json(indent=2) == written


def test_a_job_file_of_the_first_retraining_code_still_reads() -> None:
    job = JobRecord.model_validate_json((FIXTURES / "job_records" / "older.json").read_bytes())
    assert (job.state, job.error) == ("failed", "the service shut down during training")
    assert (job.stage, job.progress, job.reasons, job.activated) == ("queued", 0.0, [], False)
    assert job.public().trigger == "upload" and not hasattr(job.public(), "pid")


def test_a_record_without_an_id_is_not_a_job() -> None:
    with pytest.raises(ValueError):
        JobRecord.model_validate({"state": "queued"})


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_committed_model_manifests_read_and_write_back_unchanged(path: Path) -> None:
    written = json.loads(path.read_text())
    assert Manifest.model_validate(written).model_dump(mode="json") == written


def test_there_is_a_committed_manifest_to_check() -> None:
    assert MANIFESTS
