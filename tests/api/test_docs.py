"""Swagger UI and ReDoc render from the service's own assets, and OpenAPI documents errors."""

import json
import re

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_docs_pages_use_local_assets(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html, path
        assert "/static-offline-docs/" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = client.get(f"/static-offline-docs/{asset}")
        assert response.status_code == 200
        assert len(response.content) > 10_000


def test_openapi_documents_envelopes_and_error_codes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/api/v1/career/predict"]["post"]
    assert predict["summary"] and predict["description"]
    for status in ("401", "413", "422", "503"):
        assert status in predict["responses"], status
        example = predict["responses"][status]["content"]["application/json"]["example"]
        assert example["success"] is False and example["error"]["code"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Gateway API key.",
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["AdminKeyHeader"]["description"] == "An admin key (ADMIN_API_KEYS)."
    # Either form of the key authorises every /api/v1 and /v1 route (an admin key for
    # retraining and activation); health and docs need neither.
    bearer = {"HTTPBearer": []}
    admin_routes = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if not path.startswith(("/api/v1/", "/v1/")):
                assert security is None, path
            elif security == [{"AdminKeyHeader": []}, bearer]:
                admin_routes.add(f"{method.upper()} {path}")
            else:
                assert security == [{"APIKeyHeader": []}, bearer], path
    assert "POST /api/v1/career/retrain" in admin_routes
    assert all(
        "retrain" in r
        or "activate" in r
        or "rollback" in r
        or r == "DELETE /api/v1/career/outcomes"
        for r in admin_routes
    )
    # The gateway reports outcomes with its own key; only erasure needs an admin key.
    assert "POST /api/v1/career/outcomes" not in admin_routes
    for path in (
        "/api/v1/career/analyze",
        "/api/v1/career/careers",
        "/api/v1/career/interests",
        "/api/v1/career/model",
        "/health",
        "/health/live",
        "/health/ready",
    ):
        assert path in spec["paths"], path


def test_every_openapi_reference_resolves(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    text = json.dumps(spec)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs, "expected schema references"
    missing = refs - set(spec["components"]["schemas"])
    assert not missing, f"dangling $ref: {missing}"
    retrain = spec["paths"]["/api/v1/career/retrain"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(retrain)


def test_openapi_describes_the_openai_compatible_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    embeddings = spec["paths"]["/v1/embeddings"]["post"]
    models = spec["paths"]["/v1/models"]["get"]
    for operation in (embeddings, models):
        assert operation["summary"] and operation["description"]
        assert operation["tags"] == ["openai"]
    body = embeddings["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schemas[body.rsplit("/", 1)[1]]
    assert request["examples"] and request["additionalProperties"] is False
    assert set(request["required"]) == {"input", "model"}
    for field in ("input", "model", "encoding_format", "dimensions", "user", "modality"):
        assert request["properties"][field]["description"], field
    assert {b["type"] for b in request["properties"]["input"]["anyOf"]} == {"string", "array"}
    assert request["properties"]["encoding_format"]["enum"] == ["float", "base64"]
    ok = embeddings["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    response = schemas[ok.rsplit("/", 1)[1]]
    assert response["examples"] and set(response["properties"]) == {
        "object", "data", "model", "usage"
    }  # fmt: skip
    assert set(schemas["Usage"]["properties"]) == {"prompt_tokens", "total_tokens"}
    assert set(schemas["ModelCard"]["properties"]) == {"id", "object", "created", "owned_by"}
    # Errors: the envelope routes' statuses, in OpenAI's shape, each with an example.
    assert set(embeddings["responses"]) == {
        "200", "400", "401", "404", "413", "415", "422", "429", "503"
    }  # fmt: skip
    assert set(models["responses"]) == {"200", "401", "503"}
    for operation in (embeddings, models):
        for status, answer in operation["responses"].items():
            if status == "200":
                continue
            content = answer["content"]["application/json"]
            assert content["schema"]["$ref"].endswith("/OpenAIError"), status
            example = content["example"]["error"]
            # (FastAPI drops null values from examples: a `param` of null is left out.)
            assert {"message", "type", "code"} <= set(example) <= {
                "message", "type", "param", "code"
            }, status  # fmt: skip
            assert example["code"] in answer["description"], status
