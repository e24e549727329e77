"""The route template a request matched (`/api/v1/career/models/{version}/activate`), for
metrics labels: one series per route, whatever paths are requested."""

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.routing import compile_path
from starlette.types import Scope

UNMATCHED = "unmatched"


def route_path(scope: Scope) -> str:
    """The path as the router matches it: without the root path a proxy mounts the app
    under (`uvicorn --root-path /ml`). Starlette's own helper, so that the key policy and
    the body limits always judge the route the router will pick."""
    return get_route_path(scope)


class RouteTemplates:
    """Routers included with a prefix give the matched route its own path only
    (`/career/predict`); the full template is the OpenAPI path that ends with it and
    matches the request. Resolved once per route and cached."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._templates: list[tuple[str, object]] | None = None
        self._cache: dict[int, str] = {}  # id of the matched route -> its template

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        own = getattr(route, "path", None)
        if route is None or not isinstance(own, str):
            return UNMATCHED
        found = self._cache.get(id(route))
        if found is None:
            found = self._cache[id(route)] = self._resolve(own, route_path(scope))
        return found

    def _resolve(self, own: str, path: str) -> str:
        if self._templates is None:
            self._templates = [
                (template, compile_path(template)[0])
                for template in self.app.openapi().get("paths", {})
            ]
        for template, regex in self._templates:
            if template.endswith(own) and regex.match(path):  # type: ignore[attr-defined]
                return template
        return own  # a route outside OpenAPI (/metrics, /docs) is mounted at the root
