"""Text that leaves the process: messages shown on public endpoints."""

import re

# An absolute POSIX path: "/" followed by at least one more path character. Only the last
# component is kept: it names the file without revealing the host's layout.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"():,;/]+/)*([^\s'\"():,;/]+)")


def redact_paths(message: str) -> str:
    """`message` with every absolute path cut to its last component, e.g. "checkpoint
    /srv/secret/w.pt is bad" -> "checkpoint w.pt is bad" (URLs are left alone)."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


def brief_error(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line without directories, for a public message (some carry
    whole tensors, or paths of the host)."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    line = redact_paths(line)
    return line if len(line) <= limit else line[: limit - 3] + "..."
