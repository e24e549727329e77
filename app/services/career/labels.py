"""Career labels from uploaded data, checked to be career names before anything keeps them.

A label becomes a class of the model: `/careers`, `/predict` and `/analyze` serve it, the
model card prints it, job records count it. So an upload's label column must hold career
names, not formulas, markup, personal data or identifiers. Refusals say which rule failed,
in which column and rows, and never echo the value: it may be the personal data itself.
"""

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pandas as pd

from app.core.exceptions import InvalidInput

# Longer than any job title in O*NET or ESCO (their longest are around 70 characters); a
# longer label is a sentence or a pasted document.
MAX_LABEL_LENGTH = 80
# Spreadsheets run a cell that starts with one of these as a formula (OWASP's CSV
# injection list; tab and CR are control characters, refused on their own).
FORMULA_STARTS = ("=", "+", "-", "@")
# A column is an identifier, not careers, when more than this share of its students have a
# label of their own...
IDENTIFIER_DISTINCT_SHARE = 0.5
# ...among at least this many students: with fewer, two careers cannot both reach the ten
# students each needs (MIN_ROWS_PER_CLASS), so training refuses the table anyway.
IDENTIFIER_MIN_STUDENTS = 20
# Rows named in a refusal: enough to find them, few enough to keep the answer short.
ROWS_SHOWN = 10

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://|\bwww\.|\b(?:javascript|vbscript):|^(?:data|file|mailto|tel):\S",
    re.IGNORECASE,
)
# A phone number: only digits and the separators people write them with, 7 digits or more.
_PHONE_CHARS = re.compile(r"[\d\s()./+-]+")
_MARKUP = re.compile(r"[<>]")
# What every value rule below needs to find, in one pass: most labels (careers) have none
# of it, and an upload may have 200,000 distinct ones.
_SUSPECT = re.compile(r"^[=+\-@]|[@<>:]|www\.|^[\d\s()./+-]+$", re.IGNORECASE)

# Each rule: its name in error details, and the sentence a person reads.
LABEL_RULES: dict[str, str] = {
    "control_character": "contains a control character or line break",
    "format_character": "contains an invisible formatting character (bidi control, zero-width)",
    "unprintable": "contains an unprintable character (private-use, unassigned, or a space "
    "other than U+0020)",
    "too_long": f"is longer than {MAX_LABEL_LENGTH} characters",
    "formula": "starts with =, +, - or @ (a spreadsheet formula)",
    "email": "is an e-mail address",
    "url": "is a URL or link",
    "phone": "is a phone number",
    "markup": "contains < or > (markup)",
}


def _character_rule(value: str) -> str | None:
    # str.isprintable refuses exactly these categories (C*, Z* but the space), in C: only a
    # refused label pays for the loop that says which rule it breaks.
    if value.isprintable():
        return None
    for char in value:
        if char == " ":
            continue
        category = unicodedata.category(char)
        if category == "Cc" or category in ("Zl", "Zp"):
            return "control_character"
        if category == "Cf":
            return "format_character"
        if category in ("Co", "Cs", "Cn") or category.startswith("Z"):
            return "unprintable"
    return None


def _is_phone(value: str) -> bool:
    return bool(_PHONE_CHARS.fullmatch(value)) and sum(c.isdigit() for c in value) >= 7


_VALUE_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("too_long", lambda v: len(v) > MAX_LABEL_LENGTH),
    ("formula", lambda v: v.startswith(FORMULA_STARTS)),
    ("email", lambda v: bool(_EMAIL.search(v))),
    ("url", lambda v: bool(_URL.search(v))),
    ("phone", _is_phone),
    ("markup", lambda v: bool(_MARKUP.search(v))),
)


def label_problem(value: str) -> str | None:
    """The first rule a (stripped) label breaks, or None for a career name."""
    # Characters first: a newline hides what follows from whoever reads the table, so it
    # is the problem to report even when the rest is also a formula or markup.
    rule = _character_rule(value)
    if rule:
        return rule
    if len(value) <= MAX_LABEL_LENGTH and not _SUSPECT.search(value):
        return None
    return next((name for name, breaks in _VALUE_RULES if breaks(value)), None)


def check_labels(labels: "pd.Series[Any]", *, column: str) -> None:
    """Refuse the upload (InvalidInput) if any non-empty label is not a career name.

    `labels` are the stripped labels in upload order; rows are reported by position (0 =
    the first data row); `column` is the upload's name for the label column. Each distinct
    value is checked once.
    """
    present = labels.reset_index(drop=True).dropna()
    present = present[present != ""]
    if present.empty:
        return
    problems = {value: label_problem(str(value)) for value in present.unique()}
    rules = present.map(problems)
    failed = rules.dropna()
    if failed.empty:
        return
    by_rule = failed.groupby(failed, sort=False)
    details = [
        {
            "field": column,
            "rule": str(rule),
            "message": f"{len(rows)} label(s): {LABEL_RULES[str(rule)]}",
            "count": len(rows),
            "rows": [int(i) for i in rows.index[:ROWS_SHOWN]],
        }
        for rule, rows in sorted(by_rule, key=lambda item: -len(item[1]))
    ]
    emails = int((failed == "email").sum())
    if emails * 2 > len(present):
        raise InvalidInput(
            f"Column '{column}' holds e-mail addresses, not career names; map the column "
            "with each student's career to 'label'.",
            details=details,
        )
    raise InvalidInput(
        f"{len(failed)} of {len(present)} labels in column '{column}' are not career names "
        "(rows are counted from 0, the first data row).",
        details=details,
    )


def check_label_variety(labels: "pd.Series[Any]", *, column: str) -> None:
    """Refuse a label column that identifies students instead of naming their careers.

    `labels` holds one label per student (repeated students already counted once). A
    career column repeats a few names across many students (the public data: 17 careers
    over 2,000 students); an id, name or e-mail column is mostly distinct.
    """
    students = len(labels)
    distinct = int(labels.nunique())
    if students >= IDENTIFIER_MIN_STUDENTS and distinct > IDENTIFIER_DISTINCT_SHARE * students:
        raise InvalidInput(
            f"Column '{column}' looks like an identifier, not careers: {distinct} distinct "
            f"values among {students} students. Map the column with each student's career "
            "to 'label'.",
            details=[
                {
                    "field": column,
                    "rule": "identifier",
                    "message": "more than half of the students have a label of their own",
                    "distinct": distinct,
                    "students": students,
                }
            ],
        )
