"""Dependency accessors: routes reach the services built at start-up through these.

They are `async` on purpose: they only read app state, and a sync dependency would add a
thread-pool hop to every request.
"""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.services.career.recommender import CareerRecommender
from app.services.career.retrain import RetrainJobs
from app.services.clip.service import ClipService
from app.services.outcomes.service import OutcomeService


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_career(request: Request) -> CareerRecommender:
    recommender: CareerRecommender = request.app.state.career
    return recommender


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CareerDep = Annotated[CareerRecommender, Depends(get_career)]


async def get_clip(request: Request) -> ClipService:
    clip: ClipService = request.app.state.clip
    return clip


ClipDep = Annotated[ClipService, Depends(get_clip)]


async def get_retrain(request: Request) -> RetrainJobs:
    jobs: RetrainJobs = request.app.state.retrain
    return jobs


RetrainDep = Annotated[RetrainJobs, Depends(get_retrain)]


async def get_outcomes(request: Request) -> OutcomeService:
    outcomes: OutcomeService = request.app.state.outcomes
    return outcomes


OutcomesDep = Annotated[OutcomeService, Depends(get_outcomes)]
