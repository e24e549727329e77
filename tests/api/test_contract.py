"""The OpenAPI document is the contract with the gateway: Schemathesis sends generated
requests to every operation of a live server (the fixture models loaded, keys on) and
checks that no answer is a 5xx, a status the document does not list, or a body or
content type that does not match it."""

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import CAREER_MODELS, TINY_CLIP_ENV, serve

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
ADMIN = {"X-API-Key": "admin-key"}  # opens every route, admin ones included


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("contract")
    models = tmp / "career_models"
    import shutil

    shutil.copytree(CAREER_MODELS, models)
    process, base = serve(
        models,
        tmp,
        API_KEYS="user-key",
        **TINY_CLIP_ENV,
    )
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def api_schema(server: str) -> Any:
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


def test_every_answer_is_documented(api_schema: Any, server: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert "POST /api/v1/career/retrain" in labels and len(labels) >= 17, labels
    assert {"POST /v1/embeddings", "GET /v1/models"} <= labels, labels
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(base_url=server, headers=ADMIN, checks=CHECKS)

        check()


def test_openai_successes_match_the_document(api_schema: Any, server: str) -> None:
    """Generated bodies almost never name the served model (they get its 404), so the
    200s of /v1/embeddings are checked on bodies that do, in both encodings and both
    modalities."""
    model = httpx.get(f"{server}/v1/models", headers=ADMIN).json()["data"][0]["id"]
    image = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 30, 30)).save(image, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(image.getvalue()).decode()
    operation = api_schema["/v1/embeddings"]["POST"]
    for body in (
        {"model": model, "input": ["a red circle", "a blue square"], "user": "u"},
        {"model": model, "input": "a red circle", "encoding_format": "base64"},
        {"model": model, "input": [uri], "modality": "image"},
        {"model": model, "input": uri, "modality": "image", "encoding_format": "base64"},
    ):
        case = operation.Case(body=body)
        response = case.call_and_validate(base_url=server, headers=ADMIN, checks=CHECKS)
        assert response.status_code == 200, response.text
