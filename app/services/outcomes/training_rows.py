"""The table a retraining job on the store learns from: the outcomes of a window, and
optionally the rows of the version it starts from.

A bundle keeps no training rows (uploads are deleted when their job ends), so "the rows of
the version it starts from" exist only where they can be rebuilt exactly: the synthetic
reference set of the default model, regenerated from its seed and size and accepted only
if its sha256 equals the one in the manifest. A version trained on the store with those
rows records them (`data.base_rows`), so its successors can add them again. Any other
version (trained on an upload) has none, and the job trains on the outcomes alone.
"""

from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.services.career.bundle import BundleError, VersionRegistry
from app.services.career.catalog import default_catalog
from app.services.career.preparation import LABEL, prepare_frame
from app.services.career.synthetic import generate_students
from app.services.outcomes.store import StoredOutcome

# The identity column prepare_frame groups and deduplicates by.
IDENTITY = "student_id"


@dataclass(frozen=True)
class BaseRows:
    frame: pd.DataFrame
    facts: dict[str, Any]  # kind, rows, seed, sha256, from_version: kept in the manifest


def outcomes_frame(outcomes: list[StoredOutcome]) -> pd.DataFrame:
    """One row per student: a subject's latest outcome (they may change their mind), every
    outcome without a subject id on its own."""
    latest: dict[str, StoredOutcome] = {}
    for outcome in outcomes:  # oldest first: a later one replaces an earlier one
        key = f"subject:{outcome.subject_hash}" if outcome.subject_hash else f"outcome:{outcome.id}"
        latest[key] = outcome
    records = [
        {**outcome.features, LABEL: outcome.career, IDENTITY: key}
        for key, outcome in latest.items()
    ]
    return pd.DataFrame.from_records(records)


def base_rows(models: VersionRegistry, version: str | None) -> tuple[BaseRows | None, str]:
    """The rows of `version` when they can be rebuilt exactly, else None; and why."""
    if version is None:
        return None, "no active version"
    try:
        manifest = models.read_manifest(version)
    except (BundleError, OSError) as exc:
        return None, f"the manifest of {version} cannot be read: {exc}"
    recorded = manifest.data.get("base_rows")
    if manifest.source == "synthetic":
        rows, seed = manifest.data.get("rows_received"), manifest.metrics.get("seed")
        expected = manifest.data.get("sha256")
    elif isinstance(recorded, dict) and recorded.get("kind") == "synthetic":
        rows, seed, expected = recorded.get("rows"), recorded.get("seed"), recorded.get("sha256")
    else:
        return None, f"{version} was trained on data the service does not keep"
    if not isinstance(rows, int) or not isinstance(seed, int) or not expected:
        return None, f"the manifest of {version} does not say how its synthetic rows were made"
    frame = generate_students(default_catalog(), rows, seed=seed)
    if prepare_frame(frame).data_hash != expected:
        return None, f"the synthetic rows of {version} cannot be rebuilt exactly (catalog changed)"
    facts = {"kind": "synthetic", "rows": rows, "seed": seed, "sha256": expected}
    return BaseRows(frame, {**facts, "from_version": version}), "rebuilt exactly"


def training_frame(
    outcomes: list[StoredOutcome], base: BaseRows | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Outcomes (and base rows) as one table for prepare_frame, and the facts for the job's
    report: how many outcomes, and which base rows."""
    parts = [outcomes_frame(outcomes)] if outcomes else []
    if base is not None:
        parts.append(base.frame)
    frame = pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()
    facts: dict[str, Any] = {"outcomes": len(outcomes)}
    if base is not None:
        facts["base_rows"] = base.facts
    return frame, facts
