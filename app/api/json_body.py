"""Large JSON bodies (base64 images), read by hand so that one copy is held at a time.

FastAPI keeps the raw body, parses it into Python objects, and validates those: for a
100 MB body of base64 images that is the text twice and the decoded bytes once, all alive
until the answer. Here the body is read into one buffer, validated straight from it by
pydantic, and the buffer dropped; the caller then decodes the strings one at a time,
releasing each as it goes (`app.utils.images.take_each`).

OpenAPI still shows the model as the request body, under its own name in components.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# Models read by `json_body`, listed in the OpenAPI components by `document_json_bodies`.
_DOCUMENTED: dict[str, type[BaseModel]] = {}


def json_body(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    """A dependency that reads and validates the request's JSON body as `model`."""
    _DOCUMENTED[model.__name__] = model

    async def read(request: Request) -> Model:
        buffer = bytearray()
        async for chunk in request.stream():
            buffer += chunk
        if not buffer:
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
            )
        try:
            return model.model_validate_json(buffer)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {**error, "loc": ("body", *error["loc"])}
                    for error in exc.errors(include_url=False, include_input=False)
                ]
            ) from exc

    return read


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` of a route whose body `json_body(model)` reads."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def document_json_bodies(app: FastAPI) -> None:
    """Add the models `json_body` reads to the OpenAPI components, as FastAPI would."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _DOCUMENTED.items():
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components.setdefault(name, found)
            schema["components"]["schemas"] = dict(sorted(components.items()))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
