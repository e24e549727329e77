"""Logging set-up: plain text for people, JSON lines for log collectors."""

import logging
import re
import sys
from typing import Any

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
    """Text logs with every control character in the message escaped: a request path
    holding %0A would otherwise start a new, forged log line. Tracebacks and stacks keep
    their lines, each behind TRACE_MARGIN, so that an exception message carrying a line
    break cannot start a line that reads as a log line either."""

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
    """CR, LF and the other C0/C1 control characters as backslash escapes."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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
