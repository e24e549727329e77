"""Dependency accessors: routes reach the services built at start-up through these.

They are `async` on purpose: they only read app state, and a sync dependency would add a
thread-pool hop to every request.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from app.config import Settings
from app.services.career.recommender import CareerRecommender
from app.services.career.retrain import RetrainJobs
from app.services.clip.service import ClipService
from app.services.outcomes.service import OutcomeService


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def served_model(name: str) -> Callable[[Request], Awaitable[Any]]:
    """The accessor of the served model declared under `name` (app/served)."""

    async def get_served_model(request: Request) -> Any:
        return request.app.state.models[name]

    get_served_model.__name__ = f"get_{name}"
    return get_served_model


get_career = served_model("career")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CareerDep = Annotated[CareerRecommender, Depends(get_career)]


get_clip = served_model("clip")
ClipDep = Annotated[ClipService, Depends(get_clip)]


async def get_retrain(request: Request) -> RetrainJobs:
    jobs: RetrainJobs = request.app.state.retrain
    return jobs


RetrainDep = Annotated[RetrainJobs, Depends(get_retrain)]


async def get_outcomes(request: Request) -> OutcomeService:
    outcomes: OutcomeService = request.app.state.outcomes
    return outcomes


OutcomesDep = Annotated[OutcomeService, Depends(get_outcomes)]
