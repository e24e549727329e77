"""The runtime choice, remembered between starts so that a restart on the same kind of
machine is ready in seconds: no candidate built, timed or gated but the one that won.

A choice holds while everything that decided it is unchanged, so it is stored under a key
made of exactly that: the CPU (model and flags), the thread count, the device, the runtime
settings, the candidates offered, the timing batches, the library versions and the
version of the procedure itself. Beside the choice are the digests of the artifacts it
was made with (the probe reference, the chosen export): a rebuilt artifact is another
model, and the choice is measured again. Even a remembered choice serves only after it
passes the parity gate against the stored reference, which needs neither torch nor
open_clip.
"""

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import Settings
from app.domain.records import ArtifactManifest
from app.services.clip.artifacts import ArtifactError, ArtifactStore, library_versions
from app.services.clip.candidates import Trial

logger = logging.getLogger(__name__)

CHOICE_FILE = "choice.json"
# Libraries whose kernels decide how fast (and how exactly) a candidate runs.
CHOICE_VERSIONS = ("onnxruntime", "onnx", "torch", "open_clip_torch", "numpy")
# How the choice is made; a new way of choosing forgets the choices of the old one.
# 2: the ONNX winner's thread count is measured too.
PROCEDURE = 2


@dataclass(frozen=True)
class ChoiceKey:
    """What decides which runtime wins on a machine."""

    cpu_model: str
    cpu_flags: str  # sha256 of the sorted flags: the instruction sets kernels pick from
    threads: int
    device: str
    backend: str
    precision: str
    min_cosine: float
    batches: tuple[int, ...]
    candidates: tuple[str, ...]
    versions: tuple[tuple[str, str], ...]
    procedure: int = PROCEDURE

    @classmethod
    def of(
        cls,
        settings: Settings,
        device: str,
        batches: list[int],
        trials: list[Trial],
        flags: set[str],
    ) -> "ChoiceKey":
        return cls(
            cpu_model=_cpu_model(),
            cpu_flags=hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest(),
            threads=settings.torch_threads,
            device=device,
            backend=settings.clip_backend,
            precision=settings.clip_precision,
            min_cosine=settings.clip_min_cosine,
            batches=tuple(batches),
            candidates=tuple(t.name for t in trials if t.error is None),
            versions=tuple(library_versions(*CHOICE_VERSIONS).items()),
        )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RememberedChoice:
    """One start's measured choice: the winner, every candidate's record, and the digests
    of the artifacts (kind -> digest of their files) it was measured with."""

    key: ChoiceKey
    chosen: str
    artifacts: dict[str, str]
    trials: tuple[dict[str, Any], ...]
    measured_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RememberedChoice":
        key = dict(data["key"])
        key["batches"] = tuple(key["batches"])
        key["candidates"] = tuple(key["candidates"])
        key["versions"] = tuple(tuple(pair) for pair in key["versions"])
        return cls(
            key=ChoiceKey(**key),
            chosen=data["chosen"],
            artifacts=dict(data["artifacts"]),
            trials=tuple(data["trials"]),
            measured_at=data["measured_at"],
        )

    def restored_trials(self) -> list[Trial]:
        return [Trial.from_dict(trial) for trial in self.trials]


def artifact_digest(manifest: ArtifactManifest) -> str:
    """One digest for an artifact: of its files' sha256 digests, as its manifest lists them."""
    return hashlib.sha256(json.dumps(manifest.files, sort_keys=True).encode()).hexdigest()


def recall(store: ArtifactStore, key: ChoiceKey) -> RememberedChoice | None:
    """The choice remembered under `key`, if any (None also when unreadable)."""
    found = store.find("choice", {"key": key.digest()})
    if found is None:
        return None
    try:
        data = json.loads((found[0] / CHOICE_FILE).read_text(encoding="utf-8"))
        choice = RememberedChoice.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("remembered CLIP runtime choice unreadable (%s): measuring again", exc)
        store.discard(found[0])
        return None
    return choice if choice.key == key else None


def remember(store: ArtifactStore, choice: RememberedChoice) -> None:
    """Store the choice under its key (a read-only cache: the next start measures again)."""

    def write(out: Path) -> dict[str, Any]:
        (out / CHOICE_FILE).write_text(json.dumps(choice.to_dict(), indent=2) + "\n", "utf-8")
        return {"chosen": choice.chosen}

    try:
        store.build("choice", {"key": choice.key.digest()}, write)
    except ArtifactError as exc:
        logger.warning("CLIP runtime choice not remembered: %s", exc)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
