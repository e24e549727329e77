"""The one table from domain errors to HTTP: complete, and what the envelope shows."""

import json

import pytest

from app.core import exceptions
from app.core.exceptions import AppError, ModelLoading, Overloaded
from app.core.handlers import ERROR_STATUS, app_error_response

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
