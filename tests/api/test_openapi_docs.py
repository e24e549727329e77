"""OpenAPI for people: every field of every component says what it is, and the request
examples are real students that validate."""

import io
from typing import Any

import pytest
from PIL import Image
from pydantic import BaseModel

from app.config import Settings
from app.main import create_app
from app.schemas import clip as clip_schemas
from app.schemas.career import AnalyzeRequest, Habits, PredictRequest
from app.schemas.openai import ModelList
from app.schemas.outcomes import StoreRetrainRequest
from app.utils.images import decode_base64

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    schemas: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()["components"][
        "schemas"
    ]
    return schemas


def test_every_field_of_every_component_has_a_description(components: dict[str, Any]) -> None:
    assert {"PredictRequest", "Habits", "RetrainJob", "ClipStatus", "EmbeddingResult"} <= set(
        components
    )
    missing = [
        f"{name}.{field}"
        for name, schema in sorted(components.items())
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_no_route_documents_a_validation_body_the_service_never_sends(
    components: dict[str, Any],
) -> None:
    """Validation errors are envelopes; FastAPI's own 422 shape is never answered."""
    assert "HTTPValidationError" not in components


@pytest.mark.parametrize("model", [PredictRequest, AnalyzeRequest])
def test_the_request_example_is_a_real_student_that_validates(
    components: dict[str, Any], model: type[BaseModel]
) -> None:
    examples = components[model.__name__]["examples"]
    assert examples
    for example in examples:
        request = model.model_validate(example)
        assert len(request.academic_scores) >= 3
        assert request.habits is not None and request.interests is not None
        habits = request.habits
        # Not 0 and not the bound: what a student might really say.
        assert habits.weekly_self_study_hours not in (None, 0, 100)
        assert habits.absence_days not in (None, 0, 365)


def test_each_habit_shows_an_example_inside_its_bounds(components: dict[str, Any]) -> None:
    for field, prop in components["Habits"]["properties"].items():
        (example,) = prop["examples"]
        Habits.model_validate({field: example})


@pytest.mark.parametrize(
    "model",
    [
        clip_schemas.CompareJson,
        clip_schemas.MatchJson,
        clip_schemas.EmbedImagesJson,
        clip_schemas.CompareResult,
        clip_schemas.MatchResult,
        clip_schemas.EmbeddingResult,
        StoreRetrainRequest,
        ModelList,
    ],
)
def test_the_route_examples_validate(components: dict[str, Any], model: type[BaseModel]) -> None:
    examples = components[model.__name__]["examples"]
    assert examples
    for example in examples:
        model.model_validate(example)


@pytest.mark.parametrize("model", [clip_schemas.CompareJson, clip_schemas.MatchJson])
def test_the_json_image_examples_are_real_images(model: type[BaseModel]) -> None:
    """Swagger's "Try it out" sends them: they must decode."""
    (example,) = model.model_json_schema()["examples"]
    for field, value in example.items():
        if field.startswith("image"):
            data = decode_base64(value, max_bytes=10_000, name=field)
            with Image.open(io.BytesIO(data)) as image:
                assert image.size == (16, 16)
