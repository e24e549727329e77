"""Training tables made usable: columns mapped to features, values checked, students deduplicated.

Every table that trains a model (the default synthetic one, a CSV on the command line, a
retraining upload) goes through `prepare_frame`, so all of them meet the same rules: one
row per student, invalid values blanked, personal columns never features, careers with
too few students dropped, and a report of everything that was dropped or ignored.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from app.core.exceptions import InvalidInput
from app.services.career.features import Feature, FeatureSpec, known_feature
from app.services.career.labels import check_label_variety, check_labels
from app.utils.text import FALSE_WORDS, TRUE_WORDS

LABEL = "label"
# Columns that identify a person: used to find repeated students, never as features.
IDENTITY_COLUMNS = ("student_id", "id", "email")
PERSONAL_COLUMNS = frozenset(
    {"first_name", "last_name", "name", "full_name", "email", "phone", "address", "gender"}
)
# Careers with fewer students are dropped: too few to learn or to hold out.
# The seed of every default: the split, the folds, the models (and the synthetic students).
DEFAULT_SEED = 7
MIN_ROWS_PER_CLASS = 10


@dataclass
class PreparedData:
    """A validated table: one row per student, feature columns in spec order."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    spec: FeatureSpec
    data_hash: str
    report: dict[str, Any] = field(default_factory=dict)


def _to_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.where(series.isin([0, 1]))
    text = series.astype("string").str.strip().str.lower()
    out = pd.Series(np.nan, index=series.index, dtype="float64")
    out[text.isin(TRUE_WORDS)] = 1.0
    out[text.isin(FALSE_WORDS)] = 0.0
    return out


def prepare_frame(
    frame: pd.DataFrame,
    *,
    mapping: Mapping[str, str] | None = None,
    min_rows_per_class: int = MIN_ROWS_PER_CLASS,
) -> PreparedData:
    """Map columns, check types and ranges, drop repeats: the table a model may learn from."""
    mapping = dict(mapping or {})
    missing_sources = sorted(set(mapping) - set(frame.columns))
    if missing_sources:
        raise InvalidInput(
            "The mapping names columns the data does not have.",
            details=[
                {"field": f"mapping.{c}", "message": "no such column"} for c in missing_sources
            ],
        )
    bad_targets = []
    for source, target in mapping.items():
        if target != LABEL:
            try:
                known_feature(target)
            except KeyError:
                bad_targets.append(
                    {"field": f"mapping.{source}", "message": f"unknown feature '{target}'"}
                )
    if bad_targets:
        raise InvalidInput("The mapping names unknown features.", details=bad_targets)
    # Two columns under one name (two sources mapped to one target, or a source mapped
    # onto a name the table already has) would make that column a table of columns.
    renamed = pd.Index([mapping.get(str(c), c) for c in frame.columns])
    clashes = sorted({str(c) for c in renamed[renamed.duplicated()]})
    if clashes:
        raise InvalidInput(
            "The mapping gives two columns the same name.",
            details=[
                {"field": "mapping", "message": f"more than one column becomes '{c}'"}
                for c in clashes
            ],
        )
    # The upload's own name for the label column, for refusals a person can act on.
    label_column = next((s for s, t in mapping.items() if t == LABEL), LABEL)
    # Names repeat enough to pass for careers (the public data's first names: 51 shared
    # by ten students or more), so a column named as personal is refused by its name.
    if label_column.strip().lower() in PERSONAL_COLUMNS | set(IDENTITY_COLUMNS):
        raise InvalidInput(
            f"Column '{label_column}' describes a person, not a career; map the column with "
            f"each student's career to '{LABEL}'.",
            details=[
                {
                    "field": f"mapping.{label_column}",
                    "rule": "personal_column",
                    "message": "a personal column cannot be the label",
                }
            ],
        )

    frame = frame.rename(columns=mapping)
    if LABEL not in frame.columns:
        raise InvalidInput(
            f"The data has no '{LABEL}' column; map the outcome column to '{LABEL}'.",
            details=[{"field": "mapping", "message": f"no column is mapped to '{LABEL}'"}],
        )
    features: list[Feature] = []
    for column in frame.columns:
        if column == LABEL or column in PERSONAL_COLUMNS:
            continue
        try:
            features.append(known_feature(str(column)))
        except KeyError:
            continue
    if not features:
        raise InvalidInput("No known feature columns after mapping.", details=[])
    order = {"subject": 0, "interest": 1, "habit": 2}
    features.sort(key=lambda f: order[f.group])
    spec = FeatureSpec(features)
    rows_in = len(frame)
    ignored = sorted(str(c) for c in frame.columns if c != LABEL and c not in spec.names)

    # Values: coerce, then blank out what is not a valid value (reported per column).
    values = pd.DataFrame(index=frame.index)
    invalid: dict[str, int] = {}
    for feat in spec.features:
        raw = frame[feat.name]
        col = _to_bool(raw) if feat.kind == "boolean" else pd.to_numeric(raw, errors="coerce")
        col = col.astype("float64")
        bad = col.notna() & ((col < feat.minimum) | (col > feat.maximum))
        unparsed = raw.notna() & (raw.astype("string").str.strip() != "") & col.isna()
        col[bad] = np.nan
        if int(bad.sum() + unparsed.sum()):
            invalid[feat.name] = int(bad.sum() + unparsed.sum())
        values[feat.name] = col
    labels = frame[LABEL].astype("string").str.strip()
    check_labels(labels, column=label_column)

    drops: list[dict[str, Any]] = []

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal values, labels, frame
        count = int(mask.sum())
        if count:
            drops.append({"reason": reason, "rows": count})
            keep = ~mask
            values, labels, frame = values[keep], labels[keep], frame[keep]

    drop(labels.isna() | (labels == ""), "missing label")
    drop(values.isna().all(axis=1), "no valid feature value")

    # Repeated students: the same id or email counts once (the most complete row is kept).
    identity = _identity(frame)
    completeness = values.notna().sum(axis=1)
    keyed = pd.DataFrame({"identity": identity, "complete": completeness}, index=values.index)
    keep_index = (
        keyed.sort_values("complete", ascending=False, kind="stable")
        .drop_duplicates("identity")
        .index
    )
    repeated = pd.Series(~values.index.isin(keep_index), index=values.index)
    drop(repeated, "repeated student (same id, email or identical row)")
    # On students, not rows: an id column repeated with each student's rows is still an id.
    check_label_variety(labels, column=label_column)

    counts = labels.value_counts()
    rare = counts[counts < min_rows_per_class]
    drop(labels.isin(rare.index), f"career with fewer than {min_rows_per_class} students")
    if labels.nunique() < 2:
        raise InvalidInput(
            "At least two careers with enough students are needed to train.",
            details=[{"field": LABEL, "message": f"{labels.nunique()} usable career(s)"}],
        )

    X = values[spec.names].to_numpy(dtype="float64")
    y = labels.to_numpy(dtype=object)
    groups = identity.loc[values.index].to_numpy(dtype=object)
    canonical = values[spec.names].assign(label=labels).to_csv(index=False).encode()
    report = {
        "rows_received": rows_in,
        "rows_used": len(X),
        "unique_students": len(X),
        "rows_dropped": drops,
        "invalid_values_blanked": invalid,
        "ignored_columns": ignored,
        "features": spec.names,
        "class_counts": {str(k): int(v) for k, v in labels.value_counts().items()},
    }
    return PreparedData(
        X=X,
        y=y,
        groups=groups,
        spec=spec,
        data_hash=hashlib.sha256(canonical).hexdigest(),
        report=report,
    )


def _identity(frame: pd.DataFrame) -> pd.Series:
    """Who a row belongs to: email, else an id column, else the row's own content."""
    for column in ("email", "student_id", "id"):
        if column in frame.columns:
            key = frame[column].astype("string").str.strip().str.lower()
            if key.notna().all():
                return column + ":" + key
    content = pd.util.hash_pandas_object(
        frame.drop(columns=list(IDENTITY_COLUMNS), errors="ignore"), index=False
    )
    return "row:" + content.astype("string")
