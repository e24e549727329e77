"""Dependency accessors: routes reach the services built at start-up through these."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.services.career.recommender import CareerRecommender
from app.services.career.retrain import RetrainJobs
from app.services.clip.service import ClipService


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_career(request: Request) -> CareerRecommender:
    recommender: CareerRecommender = request.app.state.career
    return recommender


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CareerDep = Annotated[CareerRecommender, Depends(get_career)]


def get_clip(request: Request) -> ClipService:
    clip: ClipService = request.app.state.clip
    return clip


ClipDep = Annotated[ClipService, Depends(get_clip)]


def get_retrain(request: Request) -> RetrainJobs:
    jobs: RetrainJobs = request.app.state.retrain
    return jobs


RetrainDep = Annotated[RetrainJobs, Depends(get_retrain)]
