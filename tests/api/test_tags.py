"""Tag parsing in the API layer: what the CLIP service is handed, and the 422s it never sees."""

import pytest

from app.api.tags import parse_tags
from app.core.exceptions import InvalidInput

pytestmark = pytest.mark.unit


def parse(raw: list[str] | None, *, required: bool = True) -> list[str]:
    return parse_tags(raw, max_tags=3, max_length=10, required=required)


def test_repeated_and_comma_separated_tags_are_trimmed_and_deduplicated() -> None:
    assert parse(["a cat,  a   dog ", "a cat", ",,"]) == ["a cat", "a dog"]


def test_no_tags_are_fine_only_when_optional() -> None:
    assert parse(None, required=False) == []
    with pytest.raises(InvalidInput) as refused:
        parse([" , "])
    assert refused.value.details == [
        {"field": "tags", "message": "at least one non-empty tag is required"}
    ]


def test_a_long_tag_is_named_by_its_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(["ok", "x" * 11])
    assert refused.value.message == "The tags are not acceptable."
    assert refused.value.details == [{"field": "tags.1", "message": "longer than 10 characters"}]


def test_one_tag_too_many_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(["a,b,c,d"])
    assert refused.value.details == [{"field": "tags", "message": "more than 3 tags"}]
