"""What a store retrain learns from: outcomes (a subject's latest), plus the rows of the
version it starts from where they can be rebuilt exactly."""

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.services.career.bundle import VersionRegistry
from app.services.career.preparation import prepare_frame
from app.services.outcomes.store import StoredOutcome
from app.services.outcomes.training_rows import base_rows, outcomes_frame, training_frame
from tests.conftest import CAREER_MODELS

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)


def stored(i: int, career: str, subject: str | None) -> StoredOutcome:
    return StoredOutcome(i, NOW + timedelta(minutes=i), career, {"math": 50.0 + i}, subject)


def test_a_subjects_latest_outcome_counts_once() -> None:
    frame = outcomes_frame(
        [stored(1, "Doctor", "a"), stored(2, "Teacher", None), stored(3, "Nurse", "a")]
    )
    assert sorted(frame["label"]) == ["Nurse", "Teacher"]
    assert frame["student_id"].is_unique


def test_the_synthetic_fixture_rows_are_rebuilt_exactly() -> None:
    store = VersionRegistry(Path(CAREER_MODELS))
    version = store.active_version()
    base, why = base_rows(store, version)
    assert base is not None, why
    manifest = store.read_manifest(str(version))
    assert len(base.frame) == manifest.data["rows_received"]
    assert prepare_frame(base.frame).data_hash == manifest.data["sha256"]
    assert base.facts == {
        "kind": "synthetic",
        "rows": manifest.data["rows_received"],
        "seed": manifest.metrics["seed"],
        "sha256": manifest.data["sha256"],
        "from_version": version,
    }
    frame, facts = training_frame([stored(1, "Doctor", None)], base)
    assert len(frame) == len(base.frame) + 1 and facts["outcomes"] == 1
    assert facts["base_rows"] == base.facts


def test_versions_trained_on_uploads_have_no_base_rows(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(CAREER_MODELS, models)
    store = VersionRegistry(models)
    version = str(store.active_version())
    manifest_path = models / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source"] = "retrain"
    manifest_path.write_text(json.dumps(manifest))
    base, why = base_rows(store, version)
    assert base is None and "does not keep" in why
    # A store-trained version carries its synthetic base forward (manifest data.base_rows).
    original = VersionRegistry(Path(CAREER_MODELS))
    facts = base_rows(original, original.active_version())[0].facts  # type: ignore[union-attr]
    manifest["data"]["base_rows"] = facts
    manifest_path.write_text(json.dumps(manifest))
    base, why = base_rows(store, version)
    assert base is not None, why
    # A catalog or generator change is caught by the hash.
    manifest["data"]["base_rows"] = {**facts, "sha256": "0" * 64}
    manifest_path.write_text(json.dumps(manifest))
    assert base_rows(store, version)[0] is None
