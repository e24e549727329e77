"""API-key checks between the gateway and this service."""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.core.exceptions import Unauthorized

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


def require_api_key(request: Request, header: ApiKeyHeader, bearer: BearerToken) -> None:
    """Dependency of every /api/v1 route; open when API_KEYS is not configured."""
    allowed: list[str] = request.app.state.settings.api_keys
    if allowed and not key_matches(presented_key(header, bearer), allowed):
        raise Unauthorized(
            "A valid API key is required: send `X-API-Key: <key>` or `Authorization: Bearer <key>`."
        )
