"""Career model bundles on disk: one directory per version, an atomic pointer to the active one.

CAREER_MODEL_DIR/
  ACTIVE                 the active version's name (replaced atomically, under a flock)
  LAST_GOOD              the last version activated (each was checked first); served when
                         ACTIVE is unusable
  <version>/manifest.json  version, feature spec, classes, metrics, data hash, sha256 per artifact
  <version>/pipeline.joblib, reference.json, catalog.json, MODEL_CARD.md

A version is written into a hidden temporary directory and renamed into place, so a crash
leaves either a complete version or none. Artifacts are checked against the manifest's
sha256 before anything is unpickled.
"""

import errno
import fcntl
import json
import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from pydantic import ValidationError

from app.core.exceptions import InvalidInput, NotFound
from app.domain.records import Manifest
from app.schemas.retrain import ModelVersion
from app.services.career.catalog import Career, load_catalog
from app.services.career.features import FeatureSpec
from app.services.career.model_card import model_card
from app.utils.files import StagedDirectory, atomic_write
from app.utils.hashing import sha256_file

ACTIVE_POINTER = "ACTIVE"
LAST_GOOD_POINTER = "LAST_GOOD"
# Every change of ACTIVE holds an exclusive flock on this file, so a compare-and-set from a
# retraining worker cannot interleave with an activation from a server.
POINTER_LOCK = ".ACTIVE.lock"
MANIFEST = "manifest.json"
PIPELINE = "pipeline.joblib"
REFERENCE = "reference.json"
CATALOG = "catalog.json"
MODEL_CARD = "MODEL_CARD.md"
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

if TYPE_CHECKING:  # training imports sklearn, which the server loads only with a model
    from app.services.career.preparation import PreparedData
    from app.services.career.training import TrainedModel


class BundleError(Exception):
    """A bundle is missing, incomplete or fails its checksums; the message says which."""


class ActivePointerError(BundleError):
    """The ACTIVE file exists but does not name a version: empty, not text, or garbled."""


@dataclass
class CareerBundle:
    """A loaded model version: everything the recommender needs at run time."""

    version: str
    path: Path
    manifest: Manifest
    estimator: Any
    spec: FeatureSpec
    classes: list[str]
    reference: dict[str, Any]
    catalog: dict[str, Career]
    model_card: str


def validate_version_name(version: str) -> str:
    """Refuse names that could escape the model directory or hide files."""
    if not _VERSION_NAME.fullmatch(version) or ".." in version:
        raise InvalidInput(
            "Invalid model version name.",
            details=[{"field": "version", "message": "letters, digits, '.', '_' and '-' only"}],
        )
    return version


def new_version_name(source: str, data_hash: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{source}-{stamp}-{data_hash[:8]}"


class VersionRegistry:
    """The versioned model directory shared by every process of the service."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_path(self, version: str) -> Path:
        return self.root / validate_version_name(version)

    def read_active(self) -> str | None:
        """The active version's name; None when there is no ACTIVE file, ActivePointerError
        when there is one that does not hold a valid version name."""
        return _read_pointer(self.root / ACTIVE_POINTER)

    def active_version(self) -> str | None:
        """The active version's name, None when there is none or ACTIVE is unusable."""
        try:
            return self.read_active()
        except ActivePointerError:
            return None

    def last_good_version(self) -> str | None:
        """The version last activated here (None if none or unusable): ACTIVE's twin, which
        keeps naming it if ACTIVE itself is damaged or edited by hand."""
        try:
            return _read_pointer(self.root / LAST_GOOD_POINTER)
        except ActivePointerError:
            return None

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    def require(self, version: str) -> Path:
        """A version's manifest path; NotFound when there is no such version."""
        path = self.version_path(version) / MANIFEST
        if not path.is_file():
            raise NotFound(f"Model version '{version}' does not exist.")
        return path

    def read_manifest(self, version: str) -> Manifest:
        """A version's manifest; NotFound when there is no such version, BundleError when
        its manifest is not one."""
        return _parse_manifest(version, self.require(version))

    def describe(self) -> list[ModelVersion]:
        """Every version's manifest summary, newest first (unreadable manifests included)."""
        active = self.active_version()
        out = []
        for version in self.versions():
            try:
                m = self.read_manifest(version)
                features = [str(f["name"]) for f in m.feature_spec]
            except (OSError, BundleError, KeyError):
                out.append(ModelVersion(version=version, active=version == active, readable=False))
                continue
            out.append(
                ModelVersion(
                    version=version,
                    active=version == active,
                    readable=True,
                    created_at=m.created_at,
                    source=m.source,
                    description=m.description,
                    data_sha256=m.data.get("sha256"),
                    rows_used=m.data.get("rows_used"),
                    features=features,
                    careers=len(m.classes),
                    metrics=m.metrics.get("holdout") or {},
                )
            )
        return sorted(out, key=lambda v: v.created_at or "", reverse=True)

    @contextmanager
    def _pointer_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / POINTER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close, or by the kernel on a crash
            yield
        finally:
            os.close(fd)

    def set_active(self, version: str) -> None:
        """Point ACTIVE (then LAST_GOOD) at a version the caller has checked: write a temp
        file, then rename over the pointer."""
        with self._pointer_lock():
            self._point_at(version)

    def compare_and_set_active(self, expected: str | None, version: str) -> bool:
        """Point ACTIVE at `version` only if it still names `expected`; False otherwise."""
        with self._pointer_lock():
            if self.active_version() != expected:
                return False
            self._point_at(version)
            return True

    def _point_at(self, version: str) -> None:
        line = (validate_version_name(version) + "\n").encode()
        atomic_write(self.root / ACTIVE_POINTER, line, mode=0o644)
        atomic_write(self.root / LAST_GOOD_POINTER, line, mode=0o644)

    def load(self, version: str) -> CareerBundle:
        """Load a version after checking every artifact against its manifest."""
        path = self.version_path(version)
        if not (path / MANIFEST).is_file():
            raise BundleError(f"model version '{version}' has no manifest at {path}")
        manifest = _parse_manifest(version, path / MANIFEST)
        for name, expected in manifest.artifacts.items():
            artifact = path / name
            if not artifact.is_file():
                raise BundleError(f"model version '{version}' is missing {name}")
            if sha256_file(artifact) != expected:
                raise BundleError(f"model version '{version}': {name} fails its sha256 check")
        if set(manifest.artifacts) != {PIPELINE, REFERENCE, CATALOG, MODEL_CARD}:
            raise BundleError(f"model version '{version}' does not list every artifact")
        try:
            estimator = joblib.load(path / PIPELINE)
        except Exception as exc:  # a checksummed file that still fails: a library mismatch
            raise BundleError(f"model version '{version}' failed to load: {exc}") from exc
        catalog = load_catalog(json.loads((path / CATALOG).read_text(encoding="utf-8")))
        return CareerBundle(
            version=version,
            path=path,
            manifest=manifest,
            estimator=estimator,
            spec=FeatureSpec.from_list(manifest.feature_spec),
            classes=list(manifest.classes),
            reference=json.loads((path / REFERENCE).read_text(encoding="utf-8")),
            catalog={c.name: c for c in catalog},
            model_card=(path / MODEL_CARD).read_text(encoding="utf-8"),
        )

    def write(
        self,
        trained: "TrainedModel",
        data: "PreparedData",
        *,
        catalog: list[Career],
        source: str,
        description: str,
    ) -> str:
        """Write a new version atomically and return its name (it is not activated)."""
        version = new_version_name(source, data.data_hash)
        with StagedDirectory(self.root / version) as staged:
            staging = staged.path
            joblib.dump(trained.estimator, staging / PIPELINE)
            _write_json(staging / REFERENCE, trained.reference)
            _write_json(staging / CATALOG, {"careers": [c.to_dict() for c in catalog]})
            created_at = datetime.now(UTC).isoformat(timespec="seconds")
            manifest = Manifest(
                version=version,
                created_at=created_at,
                source=source,
                description=description,
                feature_spec=trained.spec.to_list(),
                classes=trained.classes,
                metrics=trained.metrics,
                data={"sha256": data.data_hash, **data.report},
                libraries={
                    "python": platform.python_version(),
                    "scikit-learn": _sklearn_version(),
                    "numpy": np.__version__,
                    "joblib": joblib.__version__,
                },
            )
            (staging / MODEL_CARD).write_text(model_card(manifest), encoding="utf-8")
            manifest.artifacts = staged.digests()  # the four files above
            staged.publish(MANIFEST, _json(manifest.model_dump(mode="json")).encode())
        return version


def _read_pointer(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ActivePointerError(
            f"{path.name} cannot be read: {exc.strerror or errno.errorcode.get(exc.errno or 0)}"
        ) from exc
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ActivePointerError(f"{path.name} is not text ({len(raw)} bytes)") from exc
    if not name:
        raise ActivePointerError(f"{path.name} is empty")
    if not _VERSION_NAME.fullmatch(name) or ".." in name:
        raise ActivePointerError(f"{path.name} does not hold a version name")
    return name


def _parse_manifest(version: str, path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        raise BundleError(
            f"model version '{version}' has an unreadable manifest: {problems}"
        ) from exc


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _write_json(path: Path, data: Any) -> None:
    path.write_text(_json(data), encoding="utf-8")


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)
