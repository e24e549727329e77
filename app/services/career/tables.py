"""Uploaded training tables: a CSV file or JSON records, read into a frame of raw values."""

import csv
import io
import json
import re
from collections import Counter
from typing import Any

import pandas as pd

from app.core.exceptions import InvalidInput, MalformedUpload, PayloadTooLarge

# Most distinct keys across JSON records: N records with N distinct keys would make an
# N x N table, quadratic in time and memory; real data has a few dozen columns.
MAX_RECORD_COLUMNS = 500
_LONE_CR = re.compile(r"\r(?!\n)")


def parse_csv(data: bytes, *, max_rows: int) -> pd.DataFrame:
    """A CSV upload as a table of strings; 400 with the line for anything unreadable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MalformedUpload(
            f"The file is not UTF-8 text (first bad byte on line {line}).",
            details=[{"field": "file", "line": line}],
        ) from exc
    if not text.strip():
        raise MalformedUpload("The file is empty.", details=[{"field": "file"}])
    # pandas splits rows at a lone CR, Python's csv module refuses one: the two would read
    # different tables from one file, so the file is refused before either reads it.
    lone_cr = _LONE_CR.search(text)
    if lone_cr:
        line = text.count("\n", 0, lone_cr.start()) + 1
        raise MalformedUpload(
            f"The file has a carriage return without a line feed on line {line} (CR-only "
            "line endings); save it with LF or CRLF line endings.",
            details=[{"field": "file", "line": line}],
        )
    # Checked before pandas parses the table: a header that repeats names is refused at
    # once, however wide the table.
    try:
        header = next(csv.reader(io.StringIO(text.lstrip("\n"))), [])
    except csv.Error as exc:  # a header cell over the csv module's field size limit
        raise MalformedUpload(
            f"The CSV header cannot be read: {exc}.", details=[{"field": "file", "line": 1}]
        ) from exc
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)  # linear
    if repeated:
        raise MalformedUpload(
            f"The CSV header repeats column names: {', '.join(repeated)}.",
            details=[{"field": "file", "line": 1}],
        )
    try:
        # Rows as parsed (a quoted cell may span lines), and no more than one past the
        # limit: the parse stops there.
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=True,
            skipinitialspace=True,
            nrows=max_rows + 1,
        )
    except (pd.errors.ParserError, csv.Error) as exc:
        raise MalformedUpload(
            f"The CSV is malformed: {exc}".strip(), details=[{"field": "file"}]
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise MalformedUpload("The CSV has no columns.", details=[{"field": "file"}]) from exc
    if len(frame) > max_rows:
        raise PayloadTooLarge(
            f"The file has more than {max_rows} rows (MAX_TRAINING_ROWS).",
            details=[{"field": "file", "max_rows": max_rows}],
        )
    return frame


def records_frame(records: list[dict[str, Any]], *, max_rows: int) -> pd.DataFrame:
    if len(records) > max_rows:
        raise PayloadTooLarge(
            f"More than {max_rows} records (MAX_TRAINING_ROWS).", details=[{"field": "records"}]
        )
    columns: dict[str, None] = {}
    for record in records:  # linear, and it stops at the first key too many
        for key in record:
            if key not in columns:
                if len(columns) == MAX_RECORD_COLUMNS:
                    raise InvalidInput(
                        f"The records have more than {MAX_RECORD_COLUMNS} distinct columns.",
                        details=[{"field": "records", "max_columns": MAX_RECORD_COLUMNS}],
                    )
                columns[key] = None
    return pd.DataFrame.from_records(records, columns=list(columns))


def check_mapping(raw: object) -> dict[str, str] | None:
    """A mapping from a form field or JSON: an object of column name -> feature or 'label'."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                "mapping is not valid JSON.", details=[{"field": "mapping", "message": str(exc)}]
            ) from exc
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise InvalidInput(
            "mapping must be a JSON object of column name -> feature name or 'label'.",
            details=[{"field": "mapping", "message": "expected an object of strings"}],
        )
    return raw
