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
    # Either form of the key authorises every /api/v1 route (an admin key for retraining
    # and activation); health and docs need neither.
    bearer = {"HTTPBearer": []}
    admin_routes = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if not path.startswith("/api/v1"):
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
