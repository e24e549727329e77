"""Which shape a request's errors take, decided from its path before anything can fail:
OpenAI's on the OpenAI-compatible routes (`/v1/...`), our envelope everywhere else."""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.context import ErrorDialect, error_dialect_var
from app.core.routes import route_path

OPENAI_PREFIX = "/v1"


def dialect_of(path: str) -> ErrorDialect:
    """`/v1` and everything under it speak OpenAI's dialect (`/api/v1` does not)."""
    if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"):
        return "openai"
    return "envelope"


class ErrorDialectMiddleware:
    """Sets the request's error dialect for everything inside it: the request middleware
    (its 401, 413 and 500 answers), the exception handlers and the routes. Plain ASGI and
    outside the request middleware, so the dialect is known before the key is checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error_dialect_var.set(dialect_of(route_path(scope)))
        await self.app(scope, receive, send)
