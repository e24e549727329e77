"""Build-once artifacts for one set of CLIP weights: exports, quantised models, probes.

    CLIP_MODEL_CACHE_DIR/<model>/<weights sha256>/<kind>-<library versions>/
        manifest.json      what it is, the versions it was built with, each file's sha256
        <files>

An artifact is built in a private staging directory and published by renaming that
directory into place: readers see a whole artifact or none, and when two processes build
the same one at once the first rename wins and the other process uses it. Every load
checks the files against the manifest; a corrupt artifact is moved aside, logged and
rebuilt. Artifacts of the same kind built with other library versions are removed once a
current one exists and they have gone unused for a week.
"""

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from app.domain.records import ArtifactManifest
from app.utils.files import StagedDirectory, discard_directory
from app.utils.hashing import sha256_file
from app.utils.text import brief_error

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
# Artifacts of other library versions go once unused this long (a rolling upgrade keeps
# both versions' in use); staging and trash directories of killed builds after an hour.
STALE_AFTER_S = 7 * 24 * 3600
ORPHAN_AFTER_S = 3600


class ArtifactError(RuntimeError):
    """An artifact could not be built."""


def library_versions(*packages: str) -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported)."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "none"
    return found


def artifact_name(kind: str, versions: dict[str, str]) -> str:
    """E.g. onnx-int8-torch2.14.1-open_clip_torch3.3.0-onnx1.23.2-onnxruntime1.32.0."""
    return "-".join([kind, *(f"{name}{v}" for name, v in versions.items())])


class ArtifactStore:
    """The artifacts of one set of weights, under CLIP_MODEL_CACHE_DIR/<model>/<sha256>.
    `variant` (a digest of the model config and loading options) is recorded in every
    manifest: the same file loaded another way is other weights."""

    def __init__(self, root: Path, *, model: str, weights_sha256: str, variant: str = "") -> None:
        self.root = root
        self.model = model
        self.weights_sha256 = weights_sha256
        self.variant = variant

    def find(self, kind: str, versions: dict[str, str]) -> tuple[Path, ArtifactManifest] | None:
        """A verified artifact and its manifest; None if missing (or corrupt: then it is
        moved aside, so the next build replaces it). Finding one marks it as in use."""
        path = self.root / artifact_name(kind, versions)
        if not path.is_dir():
            return None
        manifest, problem = self._verify(path)
        if manifest is not None:
            with contextlib.suppress(OSError):  # a read-only cache: nothing to mark
                os.utime(path / MANIFEST)
            return path, manifest
        logger.warning("CLIP artifact %s is corrupt (%s): rebuilding it", path.name, problem)
        self.discard(path)
        return None

    def _verify(self, path: Path) -> tuple[ArtifactManifest | None, str]:
        """(manifest, "") if every file matches it, else (None, what is wrong)."""
        try:
            manifest = ArtifactManifest.model_validate_json(
                (path / MANIFEST).read_text(encoding="utf-8")
            )
            if (
                manifest.format != FORMAT
                or manifest.weights_sha256 != self.weights_sha256
                or manifest.variant != self.variant
            ):
                return None, "written for other weights, options or format"
            for name, digest in manifest.files.items():
                if sha256_file(path / name) != digest:
                    return None, f"{name} fails its sha256 check"
        except FileNotFoundError as exc:
            return None, f"{Path(str(exc.filename)).name} is missing"
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            return None, f"unreadable manifest: {type(exc).__name__}"
        return manifest, ""

    def discard(self, path: Path) -> None:
        """Move an artifact out of the way (atomically), then delete it."""
        discard_directory(path)

    def build(
        self,
        kind: str,
        versions: dict[str, str],
        builder: Callable[[Path], dict[str, Any]],
    ) -> tuple[Path, ArtifactManifest]:
        """Build an artifact with `builder(staging_dir) -> manifest extras`, publish it, and
        return it (or the one a concurrent process published first). Any failure, a
        read-only or full disk included, is an ArtifactError."""
        name = artifact_name(kind, versions)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._sweep()
            staged = StagedDirectory(self.root / name)
        except OSError as exc:
            raise ArtifactError(f"cannot write the CLIP cache: {brief_error(exc)}") from exc
        started = time.perf_counter()
        with staged:
            try:
                extras = builder(staged.path)
                manifest = ArtifactManifest(
                    format=FORMAT,
                    kind=kind,
                    model=self.model,
                    weights_sha256=self.weights_sha256,
                    variant=self.variant,
                    versions=versions,
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    build_seconds=round(time.perf_counter() - started, 3),
                    files=staged.digests(),
                    **extras,
                )
                # Published meanwhile by another process: use theirs if sound.
                staged.publish(
                    MANIFEST,
                    (json.dumps(manifest.model_dump(), indent=2) + "\n").encode(),
                    replace_if=lambda target: self._verify(target)[0] is None,
                )
            except Exception as exc:
                raise ArtifactError(f"building {kind} failed: {brief_error(exc)}") from exc
        logger.info("built CLIP artifact %s in %.1fs", name, manifest.build_seconds)
        self._remove_stale(kind, name)
        found = self.find(kind, versions)
        if found is None:
            raise ArtifactError(f"{name} vanished or failed its check right after being built")
        return found

    def _remove_stale(self, kind: str, current: str) -> None:
        """Artifacts of this kind built with other library versions and not used for
        STALE_AFTER_S: during a rolling upgrade both versions' artifacts stay in use."""
        cutoff = time.time() - STALE_AFTER_S
        for path in self.root.glob(f"{kind}-*"):
            if path.name == current or not path.is_dir():
                continue
            with contextlib.suppress(OSError):
                if (path / MANIFEST).stat().st_mtime < cutoff:
                    logger.info("removing stale CLIP artifact %s", path.name)
                    self.discard(path)

    def _sweep(self) -> None:
        """Staging and trash left by processes killed mid-build (an hour is far longer
        than any build)."""
        cutoff = time.time() - ORPHAN_AFTER_S
        for path in [*self.root.glob(".staging-*"), *self.root.glob(".trash-*")]:
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
