"""API-key checks between the gateway and this service."""

import hmac
import re
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.models import APIKey
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import Scope

from app.core.exceptions import AppError, Forbidden, Unauthorized
from app.core.routes import route_path


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


KeyLevel = Literal["api", "admin"]


def key_problem(settings: Any, level: KeyLevel, headers: Headers) -> AppError | None:
    """Why a request to a route of this level must be refused (None: it may pass)."""
    if level == "admin":
        allowed: list[str] = settings.admin_api_keys
        if not allowed:
            return Forbidden(
                "Model administration is disabled: set ADMIN_API_KEYS (comma-separated "
                "keys) to enable retraining and activation."
            )
        if not key_matches(presented_key(headers), allowed):
            return Unauthorized(
                "An admin key from ADMIN_API_KEYS is required: send `X-API-Key: <key>` "
                "or `Authorization: Bearer <key>`."
            )
        return None
    # Open when API_KEYS is not configured. Admin keys are accepted too, so an admin
    # client needs one key, not two.
    if settings.api_keys and not key_matches(
        presented_key(headers), [*settings.api_keys, *settings.admin_api_keys]
    ):
        return Unauthorized(
            "A valid API key is required: send `X-API-Key: <key>` or `Authorization: Bearer <key>`."
        )
    return None


class ApiKeyCheck(SecurityBase):
    """Checks the key of a route that needs one, and documents the scheme in OpenAPI.

    The request middleware checks it first (`KeyPolicy`), before a byte of the body is
    read: a dependency runs only after FastAPI has read and parsed the body, so on its own
    an unauthenticated client could make the service read hundreds of megabytes first.
    This check stays as a second line. The bearer form is added to the OpenAPI document
    by `document_bearer_alternative`.
    """

    def __init__(self, *, admin: bool) -> None:
        self.level: KeyLevel = "admin" if admin else "api"
        self.scheme_name = "AdminKeyHeader" if admin else "APIKeyHeader"
        description = "An admin key (ADMIN_API_KEYS)." if admin else "Gateway API key."
        self.model = APIKey.model_validate(
            {"in": "header", "name": "X-API-Key", "description": description}
        )

    async def __call__(self, request: Request) -> None:
        problem = key_problem(request.app.state.settings, self.level, request.headers)
        if problem is not None:
            raise problem


# Dependency of every /api/v1 route.
require_api_key = ApiKeyCheck(admin=False)
# Dependency of admin routes (retraining, activation): needs a key from ADMIN_API_KEYS.
require_admin_key = ApiKeyCheck(admin=True)


# Everything under these needs an API key: our API, and its OpenAI-compatible twin.
KEYED_PREFIXES = ("/api/", "/v1/")


class KeyPolicy:
    """Which key a request needs, decided from its method and path before the body is read.

    Admin routes are those whose OpenAPI operation lists the admin scheme (so a route
    protected by `require_admin_key` is covered with no list to keep). Everything else
    under /api/ and /v1/ needs an API key, whether or not OpenAPI lists it: the rule fails
    closed.
    Built on first use, once every router is included.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._admin: list[tuple[re.Pattern[str], set[str], set[str]]] | None = None

    def _admin_routes(self) -> list[tuple[re.Pattern[str], set[str], set[str]]]:
        """(path regex, its admin methods, all its documented methods) per admin path."""
        routes = []
        for path, operations in self.app.openapi().get("paths", {}).items():
            methods = {
                method.upper()
                for method, operation in operations.items()
                if any(require_admin_key.scheme_name in r for r in operation.get("security", []))
            }
            if methods:
                routes.append((compile_path(path)[0], methods, {m.upper() for m in operations}))
        return routes

    def level(self, method: str, path: str) -> KeyLevel | None:
        if self._admin is None:
            self._admin = self._admin_routes()
        for regex, admin, documented in self._admin:
            # A path may mix levels (POST outcomes: gateway; DELETE outcomes: admin). Any
            # method the path does not document still needs the admin key to learn that.
            if regex.match(path) and (method in admin or method not in documented):
                return "admin"
        return "api" if path.startswith(KEYED_PREFIXES) else None

    def problem(self, scope: Scope) -> AppError | None:
        """The 401/403 this request gets, from its path, method and headers."""
        level = self.level(scope["method"], route_path(scope))
        if level is None:
            return None
        return key_problem(self.app.state.settings, level, Headers(scope=scope))


def document_bearer_alternative(app: FastAPI) -> None:
    """List `Authorization: Bearer` in OpenAPI as an alternative to X-API-Key wherever the
    key is required: ApiKeyCheck accepts both but can declare only one scheme itself.
    Admin routes list the admin scheme alone (an API key does not open them)."""
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
                admin: dict[str, list[str]] = {require_admin_key.scheme_name: []}
                bearer: dict[str, list[str]] = {"HTTPBearer": []}
                for operations in schema.get("paths", {}).values():
                    for operation in operations.values():
                        security = operation.get("security", [])
                        if admin in security:  # alternatives: the admin key, either way
                            operation["security"] = [admin, dict(bearer)]
                        elif key in security and bearer not in security:
                            security.append(dict(bearer))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
