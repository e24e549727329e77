"""The one table from domain errors to HTTP: complete, and what the envelope shows."""

import contextvars
import json
from typing import Any

import pytest

from app.core import exceptions
from app.core.context import error_dialect_var
from app.core.dialect import dialect_of
from app.core.exceptions import AppError, ModelLoading, Overloaded
from app.core.handlers import ERROR_STATUS, app_error_response
from app.core.openai_format import error_type

pytestmark = pytest.mark.unit

DOMAIN_ERRORS = [
    kind
    for kind in vars(exceptions).values()
    if isinstance(kind, type) and issubclass(kind, AppError) and kind is not AppError
]


def test_every_domain_error_has_a_status_and_a_stable_code() -> None:
    assert set(DOMAIN_ERRORS) == set(ERROR_STATUS)
    for status, code in ERROR_STATUS.values():
        assert 400 <= status < 600 and code == code.upper() and " " not in code


@pytest.mark.parametrize(("error", "status"), [(Overloaded, 429), (ModelLoading, 503)])
def test_retry_after_becomes_the_header(error: type[AppError], status: int) -> None:
    response = app_error_response(error("busy", retry_after=3, details=[{"field": "x"}]))
    body = json.loads(response.body)
    assert response.status_code == status and response.headers["Retry-After"] == "3"
    assert body["error"]["message"] == "busy" and body["error"]["details"] == [{"field": "x"}]


def test_an_unmapped_error_is_a_500_not_a_guess() -> None:
    class Unmapped(AppError):
        pass

    response = app_error_response(Unmapped("no row for me"))
    assert response.status_code == 500
    assert json.loads(response.body)["error"]["code"] == "INTERNAL_ERROR"


def test_on_openai_routes_the_same_error_takes_openais_shape() -> None:
    """The request's dialect (set from its path by ErrorDialectMiddleware) picks the shape;
    status, code and Retry-After stay those of the table."""

    def answer() -> Any:
        error_dialect_var.set("openai")
        details = [{"field": "input", "message": "got 9, limit 8"}, {"field": "other"}]
        return app_error_response(Overloaded("Too busy.", retry_after=2, details=details))

    response = contextvars.copy_context().run(answer)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert json.loads(response.body) == {
        "error": {
            "message": "Too busy. (input: got 9, limit 8)",
            "type": "rate_limit_error",
            "param": "input",
            "code": "OVERLOADED",
        }
    }
    assert "success" in json.loads(app_error_response(Overloaded("x")).body)  # default


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/v1/embeddings", "openai"),
        ("/v1/models", "openai"),
        ("/v1", "openai"),
        ("/v1/nope", "openai"),
        ("/api/v1/clip/embed/text", "envelope"),
        ("/v1x", "envelope"),
        ("/health", "envelope"),
    ],
)
def test_the_dialect_follows_the_path(path: str, dialect: str) -> None:
    assert dialect_of(path) == dialect


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (413, "invalid_request_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_openai_error_types(status: int, kind: str) -> None:
    assert error_type(status) == kind
