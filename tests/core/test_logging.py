"""Text logs: one line per record, whatever a message or an exception carries."""

import io
import logging

import pytest

from app.core.logging import TRACE_MARGIN, configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture
def text_log() -> io.StringIO:
    configure_logging(fmt="text", debug=False)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def test_a_line_break_in_an_exception_message_cannot_forge_a_log_line(
    text_log: io.StringIO,
) -> None:
    forged = "2026-01-01 00:00:00,000 INFO app.request [- -] POST /activate 200 1.0ms"
    try:
        raise ValueError(f"bad value\n{forged}\r\u2028{forged}")
    except ValueError:
        logging.getLogger("app.test").exception("failed for %s", "x\ny")
    lines = text_log.getvalue().splitlines()
    assert "failed for x\\ny" in lines[0]
    assert len(lines) > 2
    # Every line after the record's own is part of the traceback, behind the margin.
    assert all(line.startswith(TRACE_MARGIN) for line in lines[1:]), lines
    assert any("ValueError: bad value" in line for line in lines)
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_stack_info_keeps_its_lines_behind_the_margin(text_log: io.StringIO) -> None:
    logging.getLogger("app.test").warning("here", stack_info=True)
    lines = text_log.getvalue().splitlines()
    assert lines[0].endswith("here")
    assert lines[1:] and all(line.startswith(TRACE_MARGIN) for line in lines[1:])


@pytest.mark.parametrize(
    ("char", "escaped"),
    [
        ("\u202e", "\\u202e"),  # right-to-left override: shows "gpj.exe" as "exe.jpg"
        ("\u2066", "\\u2066"),  # left-to-right isolate
        ("\u200b", "\\u200b"),  # zero-width space
        ("\u200d", "\\u200d"),  # zero-width joiner
        ("\u2060", "\\u2060"),  # word joiner
        ("\ufeff", "\\ufeff"),  # byte order mark
        ("\U000e0041", "\\U000e0041"),  # tag character
        ("\x1b", "\\x1b"),  # escape (was escaped before, still is)
    ],
)
def test_invisible_format_characters_are_escaped(
    text_log: io.StringIO, char: str, escaped: str
) -> None:
    logging.getLogger("app.test").warning("GET /a%sb 200", char)
    line = text_log.getvalue()
    assert char not in line
    assert f"GET /a{escaped}b 200" in line


def test_printable_unicode_is_kept(text_log: io.StringIO) -> None:
    logging.getLogger("app.test").warning("élève 学生 مرحبا")
    assert "élève 学生 مرحبا" in text_log.getvalue()
