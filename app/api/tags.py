"""Text tags as callers send them (repeated form fields, comma-separated values, a JSON
list), parsed into the list of distinct tags the CLIP service takes."""

from collections.abc import Sequence

from app.core.exceptions import InvalidInput


def parse_tags(
    raw: Sequence[str] | None, *, max_tags: int, max_length: int, required: bool
) -> list[str]:
    """Tags from repeated fields and/or comma-separated values: trimmed, de-duplicated.
    Linear in the input, and it stops at the first tag beyond `max_tags`."""
    tags: dict[str, None] = {}  # ordered and O(1) membership
    problems = []
    for i, item in enumerate(raw or []):
        for part in item.split(","):
            tag = " ".join(part.split())
            if not tag:
                continue
            if len(tag) > max_length:
                problems.append(
                    {"field": f"tags.{i}", "message": f"longer than {max_length} characters"}
                )
                if len(problems) >= max_tags:  # enough to say what is wrong
                    raise InvalidInput("The tags are not acceptable.", details=problems)
            elif tag not in tags:
                if len(tags) == max_tags:
                    raise InvalidInput(
                        "The tags are not acceptable.",
                        details=[{"field": "tags", "message": f"more than {max_tags} tags"}],
                    )
                tags[tag] = None
    if required and not tags and not problems:
        problems.append({"field": "tags", "message": "at least one non-empty tag is required"})
    if problems:
        raise InvalidInput("The tags are not acceptable.", details=problems)
    return list(tags)
