"""The served-model contract: a model is one declaration (app/served), and registering one
more adds its routes, body limits, dependency and /health entry with no edit elsewhere."""

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

import pytest
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from app.api.deps import served_model
from app.config import Settings
from app.core.envelope import ok
from app.domain.enums import ModelState
from app.main import create_app
from app.schemas.health import CareerStatus, ClipStatus, ModelStatus
from app.served import SERVED
from app.served.contract import ServedModelSpec
from tests.conftest import assert_error, wait_for_models

pytestmark = pytest.mark.integration


class ToyStatus(ModelStatus):
    kind: Literal["toy"] = "toy"
    echoes: int


class ToyModel:
    """A model that loads at once and echoes words."""

    name = "toy"

    def __init__(self, settings: Settings) -> None:
        self.state: ModelState = "loading"
        self.echoes = 0
        self.closed = False

    def load(self) -> None:
        self.state = "loaded"

    def status(self) -> ToyStatus:
        return ToyStatus(
            state=self.state, version="toy-1", load_seconds=0.0, error=None, echoes=self.echoes
        )

    def close(self) -> None:
        self.closed = True


class Words(BaseModel):
    words: list[str]


ToyDep = Annotated[ToyModel, Depends(served_model("toy"))]
router = APIRouter(prefix="/toy", tags=["toy"])


@router.post("/echo")
async def echo(body: Words, toy: ToyDep) -> Response:
    """The words back."""
    toy.echoes += 1
    return ok({"words": body.words})


async def load_now(toy: ToyModel, settings: Settings) -> None:
    toy.load()


TOY = ServedModelSpec(
    name="toy",
    build=ToyModel,
    serve=load_now,
    status=ToyStatus,
    api_routers=(router,),
    body_limits=lambda settings: {"/api/v1/toy/echo": 64},
)


@pytest.fixture
def toy_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    app = create_app(make_settings(), served=(*SERVED, TOY))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for_models(client)
        yield client


def test_one_more_declaration_adds_routes_limits_and_health(toy_client: TestClient) -> None:
    answer = toy_client.post("/api/v1/toy/echo", json={"words": ["a", "b"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"words": ["a", "b"]}
    # Its own body limit (64 bytes), not MAX_JSON_BODY_KB.
    assert_error(
        toy_client.post("/api/v1/toy/echo", json={"words": ["x" * 80]}), 413, "PAYLOAD_TOO_LARGE"
    )
    models = toy_client.get("/health").json()["data"]["models"]
    assert models["toy"] == {
        "kind": "toy",
        "state": "loaded",
        "version": "toy-1",
        "load_seconds": 0.0,
        "error": None,
        "echoes": 1,
    }
    assert models["career"]["kind"] == "career"
    assert toy_client.get("/health/ready?model=toy").status_code == 200
    spec = toy_client.get("/openapi.json").json()
    assert "/api/v1/toy/echo" in spec["paths"]
    health = spec["components"]["schemas"]["Health"]["properties"]["models"]
    assert set(health["additionalProperties"]["discriminator"]["mapping"]) == {
        "career",
        "clip",
        "toy",
    }


def test_the_declared_models_are_closed_at_shutdown(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), served=(*SERVED, TOY))
    with TestClient(app) as client:
        toy = client.app.state.models["toy"]  # type: ignore[attr-defined]
        assert not toy.closed
    assert toy.closed


def test_each_model_shows_only_its_own_fields(client: TestClient) -> None:
    models = client.get("/health").json()["data"]["models"]
    assert set(models["career"]) == set(CareerStatus.model_fields)
    assert set(models["clip"]) == set(ClipStatus.model_fields)
    assert "runtime" not in models["career"] and "predictor" not in models["clip"]
    assert (models["career"]["kind"], models["clip"]["kind"]) == ("career", "clip")


def test_a_field_the_status_type_does_not_declare_is_refused() -> None:
    """An undeclared field is an error where the status is built, never dropped silently."""
    fields: dict[str, Any] = {"state": "loaded", "version": "v", "load_seconds": 1.0}
    with pytest.raises(ValidationError, match="runtime"):
        CareerStatus(**fields, error=None, runtime={"backend": "torch"})


def test_two_models_under_one_name_are_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="distinct names"):
        create_app(make_settings(), served=(*SERVED, TOY, TOY))


def test_two_models_limiting_one_path_are_refused(make_settings: Callable[..., Settings]) -> None:
    """A path's body limit comes from one declaration, never from whichever came last."""
    thief = replace(TOY, name="thief", body_limits=lambda settings: {"/api/v1/clip/match": 1})
    with pytest.raises(ValueError, match="/api/v1/clip/match"):
        create_app(make_settings(), served=(*SERVED, thief))
