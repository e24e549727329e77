"""API-key checks between the gateway and this service."""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.core.exceptions import Forbidden, Unauthorized

# Declared as security schemes so that /docs offers an "Authorize" button.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Gateway API key.")
_bearer = HTTPBearer(auto_error=False, description="The same key as a bearer token.")

ApiKeyHeader = Annotated[str | None, Depends(_api_key_header)]
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def key_matches(presented: str | None, allowed: list[str]) -> bool:
    """Constant-time comparison against every allowed key (no early exit on a match)."""
    if not presented:
        return False
    given = presented.encode()
    matched = False
    for key in allowed:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def presented_key(header: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return header or (bearer.credentials if bearer else None)


async def require_api_key(request: Request, header: ApiKeyHeader, bearer: BearerToken) -> None:
    """Dependency of every /api/v1 route; open when API_KEYS is not configured.

    Admin keys are accepted too, so an admin client needs one key, not two.
    """
    settings = request.app.state.settings
    allowed: list[str] = settings.api_keys
    if allowed and not key_matches(
        presented_key(header, bearer), [*allowed, *settings.admin_api_keys]
    ):
        raise Unauthorized(
            "A valid API key is required: send `X-API-Key: <key>` or `Authorization: Bearer <key>`."
        )


async def require_admin_key(request: Request, header: ApiKeyHeader, bearer: BearerToken) -> None:
    """Dependency of admin routes (retraining, activation): needs a key from ADMIN_API_KEYS."""
    allowed: list[str] = request.app.state.settings.admin_api_keys
    if not allowed:
        raise Forbidden(
            "Model administration is disabled: set ADMIN_API_KEYS (comma-separated keys) "
            "to enable retraining and activation."
        )
    if not key_matches(presented_key(header, bearer), allowed):
        raise Unauthorized(
            "An admin key from ADMIN_API_KEYS is required: send `X-API-Key: <key>` or "
            "`Authorization: Bearer <key>`."
        )
