"""OpenAPI for people: every field of the career, retraining, outcome, OpenAI and envelope
schemas says what it is, and the request examples are real students that validate."""

import importlib
import inspect
from typing import Any

import pytest
from pydantic import BaseModel

from app.config import Settings
from app.main import create_app
from app.schemas.career import AnalyzeRequest, Habits, PredictRequest

pytestmark = pytest.mark.unit

# The modules whose components this test holds to descriptions (health and CLIP schemas
# are checked by their owners' tests as they gain theirs).
DOCUMENTED = (
    "app.domain.records",
    "app.schemas.career",
    "app.schemas.envelope",
    "app.schemas.openai",
    "app.schemas.outcomes",
    "app.schemas.retrain",
)


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    schemas: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()["components"][
        "schemas"
    ]
    return schemas


def _documented_names() -> set[str]:
    names = set()
    for module_name in DOCUMENTED:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__ == module_name
            ):
                names.add(name)
    return names


def test_every_field_of_the_documented_components_has_a_description(
    components: dict[str, Any],
) -> None:
    names = _documented_names()
    checked = {
        name: schema
        for name, schema in components.items()
        if name in names or name.startswith("Envelope_")  # Envelope[T], one per T
    }
    assert {"PredictRequest", "Habits", "RetrainJob", "Envelope_PredictResponse_"} <= set(checked)
    missing = [
        f"{name}.{field}"
        for name, schema in sorted(checked.items())
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


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
