"""Bundles on disk: checksums, atomic writes, version names."""

import errno
import json
import os
from pathlib import Path

import pytest

from app.core.exceptions import InvalidInput
from app.services.career import bundle
from app.services.career.bundle import (
    ActivePointerError,
    BundleError,
    VersionRegistry,
    validate_version_name,
)

pytestmark = pytest.mark.unit


def test_loads_active_and_verifies(career_model_dir: Path) -> None:
    store = VersionRegistry(career_model_dir)
    bundle = store.load(store.active_version())  # type: ignore[arg-type]
    assert bundle.version == store.active_version()
    assert set(bundle.manifest.artifacts) == {
        "pipeline.joblib",
        "reference.json",
        "catalog.json",
        "MODEL_CARD.md",
    }
    assert bundle.manifest.libraries["scikit-learn"]
    assert len(bundle.manifest.data["sha256"]) == 64
    assert "synthetic" in bundle.model_card.lower()


@pytest.mark.parametrize(
    "artifact", ["pipeline.joblib", "reference.json", "catalog.json", "MODEL_CARD.md"]
)
def test_any_tampered_artifact_is_refused(career_model_dir: Path, artifact: str) -> None:
    store = VersionRegistry(career_model_dir)
    path = career_model_dir / store.active_version() / artifact  # type: ignore[operator]
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(BundleError, match="sha256"):
        store.load(store.active_version())  # type: ignore[arg-type]


def test_manifest_without_artifact_list_is_refused(career_model_dir: Path) -> None:
    store = VersionRegistry(career_model_dir)
    version = store.active_version()
    manifest_path = career_model_dir / version / "manifest.json"  # type: ignore[operator]
    manifest = json.loads(manifest_path.read_text())
    manifest["artifacts"].pop("pipeline.joblib")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="every artifact"):
        store.load(version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["../etc", "a/b", ".hidden", "", "x" * 200, "a\\b", "..", "v1/../../x"]
)
def test_version_names_cannot_escape(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_version_name(name)


def test_staging_dirs_are_not_versions(career_model_dir: Path) -> None:
    (career_model_dir / ".staging-x-123").mkdir()
    store = VersionRegistry(career_model_dir)
    assert store.versions() == [store.active_version()]


def test_version_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_version_name("v1\n")


@pytest.mark.parametrize("content", [b"", b"  \n", b"\xff\xfe\x00", b"../etc\n", b"a b"], ids=repr)
def test_an_unusable_active_file_is_reported_not_used(
    career_model_dir: Path, content: bytes
) -> None:
    store = VersionRegistry(career_model_dir)
    (career_model_dir / "ACTIVE").write_bytes(content)
    with pytest.raises(ActivePointerError):
        store.read_active()
    assert store.active_version() is None
    (career_model_dir / "ACTIVE").unlink()
    assert store.read_active() is None  # no file: no model yet, not an error


def test_compare_and_set_moves_active_only_from_the_expected_version(
    career_model_dir: Path,
) -> None:
    store = VersionRegistry(career_model_dir)
    original = store.active_version()
    assert not store.compare_and_set_active("someone-else-1", "candidate-1")
    assert store.active_version() == original
    assert store.compare_and_set_active(original, "candidate-1")
    assert store.active_version() == "candidate-1"


def test_a_full_disk_leaves_the_pointer_and_no_temporary_file(
    career_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VersionRegistry(career_model_dir)
    original = store.active_version()
    before = sorted(p.name for p in career_model_dir.iterdir())

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bundle.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        store.set_active("candidate-1")
    assert store.active_version() == original
    after = sorted(p.name for p in career_model_dir.iterdir() if p.name != ".ACTIVE.lock")
    assert after == before
