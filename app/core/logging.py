"""Logging set-up: plain text for people, JSON lines for log collectors."""

import logging
import sys
from typing import Any

import regex
from pythonjsonlogger.json import JsonFormatter

from app.core.context import request_id_var, trace_id_var


class _RequestIdFilter(logging.Filter):
    """Every line carries its request's id and, when the gateway sent a `traceparent`,
    its trace id, so one request is found across the gateway's logs and these."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.trace_id = trace_id_var.get()
        return True


class _OneLineFormatter(logging.Formatter):
    """Text logs with every control and format character in the message escaped: a request
    path holding %0A would otherwise start a new, forged log line, and one holding U+202E
    (right-to-left override) or zero-width characters would show a reader other text than
    what was logged. Tracebacks and stacks keep their lines, each behind TRACE_MARGIN, so
    that an exception message carrying a line break cannot start a line that reads as a
    log line either."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _in_margin(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _in_margin(super().formatStack(stack_info))


# Starts every line of a traceback in text logs.
TRACE_MARGIN = "  | "


def _in_margin(text: str) -> str:
    return "\n".join(TRACE_MARGIN + escape_controls(line) for line in text.splitlines())


def escape_controls(text: str) -> str:
    """CR, LF and the other C0/C1 control characters, the line and paragraph separators,
    and the invisible format characters (bidi controls, zero-width ones, BOM) as backslash
    escapes."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# `regex` knows Unicode categories (the standard `re` does not): Cc = C0, DEL and C1;
# Cf = format characters, which reorder or hide text on a terminal without being visible.
_CONTROLS = regex.compile(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]")


def configure_logging(*, fmt: str, debug: bool) -> None:
    """Route the service's and uvicorn's loggers through one handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(trace_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            _OneLineFormatter(
                "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The request middleware writes one richer line per request; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
