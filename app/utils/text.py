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


# Words read as booleans in forms and uploaded tables, case-insensitively.
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "off"})


def parse_bool(text: str) -> bool | None:
    """True or False for a boolean word (`yes`, `0`, `On`...), None for anything else."""
    word = text.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
