"""API-key checks between the gateway and this service."""

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.models import APIKey
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers

from app.core.exceptions import Forbidden, Unauthorized


def key_matches(presented: str | None, allowed: list[str]) -> bool:
    """Constant-time comparison against every allowed key (no early exit on a match)."""
    if not presented:
        return False
    given = presented.encode()
    matched = False
    for key in allowed:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def presented_key(headers: Headers) -> str | None:
    """`X-API-Key: <key>`, else `Authorization: Bearer <key>`."""
    if key := headers.get("x-api-key"):
        return key
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


class ApiKeyCheck(SecurityBase):
    """One dependency that reads both headers and checks the key.

    A SecurityBase, so /docs lists the scheme and offers "Authorize" (the bearer form is
    added to the OpenAPI document by `document_bearer_alternative`). It replaces
    APIKeyHeader + HTTPBearer sub-dependencies: FastAPI's overhead per dependency is
    about 15 us on a small VM, and every /api/v1 request paid it three times.
    """

    def __init__(self, *, admin: bool) -> None:
        self.admin = admin
        self.scheme_name = "APIKeyHeader"
        self.model = APIKey.model_validate(
            {"in": "header", "name": "X-API-Key", "description": "Gateway API key."}
        )

    async def __call__(self, request: Request) -> None:
        settings = request.app.state.settings
        if self.admin:
            allowed: list[str] = settings.admin_api_keys
            if not allowed:
                raise Forbidden(
                    "Model administration is disabled: set ADMIN_API_KEYS (comma-separated "
                    "keys) to enable retraining and activation."
                )
            if not key_matches(presented_key(request.headers), allowed):
                raise Unauthorized(
                    "An admin key from ADMIN_API_KEYS is required: send `X-API-Key: <key>` "
                    "or `Authorization: Bearer <key>`."
                )
            return
        # Open when API_KEYS is not configured. Admin keys are accepted too, so an admin
        # client needs one key, not two.
        if settings.api_keys and not key_matches(
            presented_key(request.headers), [*settings.api_keys, *settings.admin_api_keys]
        ):
            raise Unauthorized(
                "A valid API key is required: send `X-API-Key: <key>` or "
                "`Authorization: Bearer <key>`."
            )


# Dependency of every /api/v1 route.
require_api_key = ApiKeyCheck(admin=False)
# Dependency of admin routes (retraining, activation): needs a key from ADMIN_API_KEYS.
require_admin_key = ApiKeyCheck(admin=True)


def document_bearer_alternative(app: FastAPI) -> None:
    """List `Authorization: Bearer` in OpenAPI as an alternative to X-API-Key wherever the
    key is required: ApiKeyCheck accepts both but can declare only one scheme itself."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.get("components", {}).get("securitySchemes", {})
            if require_api_key.scheme_name in schemes:
                schemes["HTTPBearer"] = {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The same key as a bearer token.",
                }
                key: dict[str, list[str]] = {require_api_key.scheme_name: []}
                bearer: dict[str, list[str]] = {"HTTPBearer": []}
                for operations in schema.get("paths", {}).values():
                    for operation in operations.values():
                        security = operation.get("security", [])
                        if key in security and bearer not in security:
                            security.append(dict(bearer))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
