"""Career labels of uploaded data: the rules a career name meets, the columns refused as
identifiers, the CSV reader's row count and line endings, and the model card's escaping."""

import json
import re
from typing import Any

import pandas as pd
import pytest

from app.core.exceptions import InvalidInput, MalformedUpload, PayloadTooLarge
from app.domain.records import Manifest
from app.services.career.catalog import default_catalog
from app.services.career.labels import (
    IDENTIFIER_MIN_STUDENTS,
    LABEL_RULES,
    MAX_LABEL_LENGTH,
    check_label_variety,
    check_labels,
    label_problem,
)
from app.services.career.model_card import markdown_cell, model_card
from app.services.career.preparation import prepare_frame
from app.services.career.synthetic import generate_students
from app.services.career.tables import parse_csv

pytestmark = pytest.mark.unit

PUBLIC_CAREERS = [
    "Software Engineer",
    "Business Owner",
    "Unknown",
    "Banker",
    "Lawyer",
    "Accountant",
    "Doctor",
    "Real Estate Developer",
    "Stock Investor",
    "Construction Engineer",
    "Artist",
    "Game Developer",
    "Government Officer",
    "Teacher",
    "Designer",
    "Scientist",
    "Writer",
    "Social Network Studies",
]
# Real job titles with the punctuation and scripts real exports have.
OTHER_REAL_CAREERS = [
    "Ingénieur",
    "Médecin généraliste",
    "R&D Scientist",
    "C++ Developer",
    ".NET Developer",
    "Children's Nurse",
    "UX/UI Designer",
    "2D/3D Artist",
    "Doctor, M.D.",
    "Engineer (Level 2)",
    "Head of Sales \u2013 EMEA",  # an en dash
    "Air-conditioning Technician",
    "Data: Analyst",
    "NA",
    "技术员",
    "مهندس",
    "शिक्षक",
    "Research | Development",  # allowed, and escaped wherever markdown shows it
    "x" * MAX_LABEL_LENGTH,
]

HOSTILE = {
    '=HYPERLINK("http://evil.test","click")': "formula",
    "+cmd|' /C calc'!A0": "formula",
    "-2+3": "formula",
    "@SUM(A1:A9)": "formula",
    "<img src=x onerror=alert(1)>": "markup",
    "Doctor<script>": "markup",
    "Doctor\n# Injected heading": "control_character",
    "Doctor\r\n| a | b |": "control_character",
    "Doc\ttor": "control_character",
    "Doctor\u2028Lawyer": "control_character",
    "A" * 5000: "too_long",
    "x" * (MAX_LABEL_LENGTH + 1): "too_long",
    "Doctor\u202eexe.gpj": "format_character",
    "Doc\u200btor": "format_character",
    "\ufeffDoctor": "format_character",
    "Doctor\u00a0Who": "unprintable",
    "Doctor\ue000": "unprintable",
    "pupil7@example.test": "email",
    "Contact jane.doe@school.example": "email",
    "http://evil.test/x": "url",
    "www.evil.test": "url",
    "javascript:alert(1)": "url",
    "(555) 123-4567": "phone",
    "07700 900123": "phone",
}


@pytest.mark.parametrize("name", PUBLIC_CAREERS + [c.name for c in default_catalog()])
def test_public_and_catalog_careers_are_career_names(name: str) -> None:
    assert label_problem(name) is None


@pytest.mark.parametrize("name", OTHER_REAL_CAREERS)
def test_real_career_names_with_punctuation_and_accents_pass(name: str) -> None:
    assert label_problem(name) is None


@pytest.mark.parametrize(("value", "rule"), HOSTILE.items(), ids=list(range(len(HOSTILE))))
def test_hostile_labels_break_the_named_rule(value: str, rule: str) -> None:
    assert label_problem(value) == rule
    assert rule in LABEL_RULES


def _labels(values: list[str]) -> "pd.Series[Any]":
    return pd.Series(values, dtype="string")


def test_refusal_names_rule_rows_and_count_without_the_value() -> None:
    values = ["Doctor"] * 20 + ["Lawyer"] * 20
    values[3] = values[17] = "=HYPERLINK(1)"
    values[30] = "<b>Doctor</b>"
    with pytest.raises(InvalidInput) as caught:
        check_labels(_labels(values), column="career_aspiration")
    error = caught.value
    assert "3 of 40 labels" in error.message and "career_aspiration" in error.message
    formula = next(d for d in error.details if d["rule"] == "formula")
    assert formula == {
        "field": "career_aspiration",
        "rule": "formula",
        "message": f"2 label(s): {LABEL_RULES['formula']}",
        "count": 2,
        "rows": [3, 17],
    }
    markup = next(d for d in error.details if d["rule"] == "markup")
    assert markup["rows"] == [30] and markup["count"] == 1
    said = error.message + json.dumps(error.details)
    assert "HYPERLINK" not in said and "<b>" not in said


def test_rows_are_positions_whatever_the_index_and_the_list_is_short() -> None:
    labels = _labels(["Doctor"] * 5 + ["a@b.test"] * 30)
    labels.index = labels.index + 1000
    with pytest.raises(InvalidInput) as caught:
        check_labels(labels, column="contact")
    (detail,) = caught.value.details
    assert detail["count"] == 30 and detail["rows"] == list(range(5, 15))


def test_a_column_of_emails_is_refused_by_name() -> None:
    addresses = [f"pupil{i % 4}@example.test" for i in range(60)]
    with pytest.raises(InvalidInput) as caught:
        check_labels(_labels(addresses), column="contact")
    assert caught.value.message.startswith("Column 'contact' holds e-mail addresses")
    assert "@" not in caught.value.message + json.dumps(caught.value.details)


def test_missing_labels_are_not_checked() -> None:
    labels = pd.Series(["Doctor", None, "", "Lawyer"], dtype="string")
    check_labels(labels, column="label")  # no error: missing labels are dropped later


# --- identifier columns ---------------------------------------------------------------------


def test_careers_over_many_students_are_not_identifiers() -> None:
    careers = pd.Series([PUBLIC_CAREERS[i % 17] for i in range(2000)])
    check_label_variety(careers, column="career_aspiration")
    # Exactly half distinct is still allowed: every career shared by two students.
    check_label_variety(pd.Series([f"Career {i // 2}" for i in range(40)]), column="c")


def test_mostly_unique_values_are_an_identifier() -> None:
    ids = pd.Series([f"S-{i:05d}" for i in range(IDENTIFIER_MIN_STUDENTS)])
    with pytest.raises(InvalidInput) as caught:
        check_label_variety(ids, column="student_ref")
    (detail,) = caught.value.details
    assert detail["field"] == "student_ref" and detail["rule"] == "identifier"
    assert detail["distinct"] == detail["students"] == IDENTIFIER_MIN_STUDENTS
    assert "S-0" not in caught.value.message + json.dumps(caught.value.details)


def test_too_few_students_to_tell_is_left_to_the_class_size_rule() -> None:
    check_label_variety(
        pd.Series([f"S-{i}" for i in range(IDENTIFIER_MIN_STUDENTS - 1)]), column="c"
    )


# --- through prepare_frame (both upload forms go through it) -------------------------------


def students(n: int = 300) -> pd.DataFrame:
    return generate_students(default_catalog(), n, seed=4)


def test_prepare_frame_refuses_a_hostile_label_before_any_drop() -> None:
    frame = students()
    frame.loc[[2, 9, 40], "label"] = "Doctor\n# Injected"
    frame = frame.rename(columns={"label": "career"})
    with pytest.raises(InvalidInput) as caught:
        prepare_frame(frame, mapping={"career": "label"})
    (detail,) = caught.value.details
    assert detail["field"] == "career" and detail["rule"] == "control_character"
    assert detail["rows"] == [2, 9, 40]


def test_prepare_frame_refuses_an_id_column_repeated_per_student() -> None:
    # Each student three times, as in the public data: a third of the rows are distinct,
    # but every student still has a label of their own.
    frame = pd.concat([students(200)] * 3, ignore_index=True)
    frame["ref"] = [f"R{i % 200:04d}" for i in range(len(frame))]
    frame = frame.drop(columns="label")
    with pytest.raises(InvalidInput) as caught:
        prepare_frame(frame, mapping={"ref": "label"})
    assert caught.value.details[0]["rule"] == "identifier"
    assert caught.value.details[0]["students"] == 200


@pytest.mark.parametrize("column", ["first_name", "email", "Student_ID", "gender"])
def test_prepare_frame_refuses_a_personal_column_as_label(column: str) -> None:
    frame = students().drop(columns="label")
    frame[column] = ["Paul", "Anna"] * 150  # would pass every value rule
    with pytest.raises(InvalidInput) as caught:
        prepare_frame(frame, mapping={column: "label"})
    assert caught.value.details[0]["field"] == f"mapping.{column}"
    assert column in caught.value.message


def test_prepare_frame_refuses_a_mapping_that_makes_two_columns_one() -> None:
    frame = students().rename(columns={"label": "career"})
    frame["Maths"] = frame["math"]
    for mapping in ({"career": "label", "Maths": "label"}, {"career": "label", "Maths": "math"}):
        with pytest.raises(InvalidInput) as caught:
            prepare_frame(frame, mapping=mapping)
        assert caught.value.details[0]["field"] == "mapping"


def test_prepare_frame_keeps_real_careers_with_accents_and_symbols() -> None:
    frame = students(600)
    renames = dict(zip(frame["label"].unique()[:3], OTHER_REAL_CAREERS[:3], strict=True))
    frame["label"] = frame["label"].replace(renames)
    data = prepare_frame(frame)
    assert set(OTHER_REAL_CAREERS[:3]) <= set(data.report["class_counts"])


# --- the CSV reader ------------------------------------------------------------------------


def test_cr_only_line_endings_are_malformed() -> None:
    with pytest.raises(MalformedUpload) as caught:
        parse_csv(b"math,label\r90,Doctor\r80,Lawyer\r", max_rows=50)
    assert "line 1" in caught.value.message and "CR" in caught.value.message
    # A CR-separated tail after an LF header is read by pandas as rows the LF count missed.
    with pytest.raises(MalformedUpload) as caught:
        parse_csv(b"math,label\n" + b"90,Doctor\r" * 6000, max_rows=5000)
    assert caught.value.details == [{"field": "file", "line": 2}]


def test_crlf_line_endings_are_read() -> None:
    frame = parse_csv(b"math,label\r\n90,Doctor\r\n80,Lawyer\r\n", max_rows=50)
    assert frame["label"].tolist() == ["Doctor", "Lawyer"]


def test_the_row_limit_counts_parsed_rows() -> None:
    # Quoted cells over several lines are one row each: 40 rows, 160 line feeds.
    multi_line = b"math,label,notes\n" + b'90,Doctor,"a\nb\nc"\n' * 40
    assert len(parse_csv(multi_line, max_rows=50)) == 40
    with pytest.raises(PayloadTooLarge):
        parse_csv(b"math,label\n" + b"90,Doctor\n" * 51, max_rows=50)
    assert len(parse_csv(b"math,label\n" + b"90,Doctor\n" * 50, max_rows=50)) == 50


def test_a_header_the_csv_module_cannot_read_is_malformed() -> None:
    huge_cell = b"a" * 200_000  # over the csv module's field size limit
    with pytest.raises(MalformedUpload):
        parse_csv(b"math," + huge_cell + b"\n1,2\n", max_rows=50)


# --- markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Software Engineer", "Software Engineer"),
        ("Ingénieur", "Ingénieur"),
        ("Research | Development", r"Research \| Development"),
        ("Doctor\n# Heading", r"Doctor \# Heading"),
        ("<img src=x>", r"\<img src\=x\>"),
        ("[link](http://x)", r"\[link\]\(http\:\/\/x\)"),
        ("C++ Developer", r"C\+\+ Developer"),
    ],
)
def test_markdown_cell_shows_text_literally(text: str, shown: str) -> None:
    assert markdown_cell(text) == shown


def test_model_card_escapes_career_names() -> None:
    metrics = {"precision": 0.5, "recall": 0.5, "support": 10}
    holdout = {
        "rows": 40,
        "top1_accuracy": 0.5,
        "top3_accuracy": 0.8,
        "macro_f1": 0.4,
        "log_loss": 1.2,
        "baseline_top1_accuracy": 0.3,
    }
    manifest = Manifest(
        version="retrain-x",
        created_at="2025-01-01T00:00:00+00:00",
        source="retrain",
        description="test",
        feature_spec=[],
        metrics={
            "holdout": holdout,
            "chosen_model": "logistic_regression",
            "per_career": {"Research | Development": metrics, "Doctor\n# Owned": metrics},
        },
        data={"rows_received": 40, "rows_used": 40, "sha256": "0" * 64, "features": ["math"]},
        libraries={},
        classes=["Research | Development", "Doctor\n# Owned"],
    )
    card = model_card(manifest)
    rows = [line for line in card.splitlines() if line.startswith("| Research")]
    assert rows == [r"| Research \| Development | 0.5 | 0.5 | 10 |"]
    # Four cells: the escaped pipe is not a border (GFM splits on unescaped pipes only).
    assert len(re.split(r"(?<!\\)\|", rows[0])) == 6
    assert "\n# Owned" not in card and r"| Doctor \# Owned |" in card
