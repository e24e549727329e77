"""Career routes: recommendations, analytics, catalog, vocabulary and the active model."""

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import CareerDep
from app.api.responses import errors
from app.core.envelope import ok
from app.schemas.career import (
    AnalyzeRequest,
    AnalyzeResponse,
    CatalogCareer,
    InterestVocabulary,
    ModelInfo,
    PredictRequest,
    PredictResponse,
)
from app.schemas.envelope import Envelope

router = APIRouter(prefix="/career", tags=["career"])

# Blocking work stays off the event loop: sync routes run in FastAPI's thread pool.
# Predict decides for itself (CareerRecommender.predict_async): sub-millisecond work runs
# inline, because the hop to a pool thread costs more than that and halved its throughput.


@router.post(
    "/predict",
    response_model=Envelope[PredictResponse],
    responses=errors(401, 413, 422, 503),
    summary="Recommend careers for a student",
)
async def predict(body: PredictRequest, career: CareerDep) -> Response:
    """Top-k careers with calibrated probabilities, compatibility, strengths and gaps."""
    return ok(await career.predict_async(body))


@router.post(
    "/analyze",
    response_model=Envelope[AnalyzeResponse],
    responses=errors(401, 413, 422, 503),
    summary="Explain how well careers fit a student",
)
def analyze(body: AnalyzeRequest, career: CareerDep) -> Response:
    """Per-feature contributions, cohort percentiles and the changes that would help most."""
    return ok(career.analyze(body))


@router.get(
    "/careers",
    response_model=Envelope[list[CatalogCareer]],
    responses=errors(401, 503),
    summary="Career catalog",
)
def careers(career: CareerDep) -> Response:
    """Careers of the active model first, then the rest of the catalog."""
    return ok(career.catalog())


@router.get(
    "/interests",
    response_model=Envelope[InterestVocabulary],
    responses=errors(401),
    summary="Interest vocabulary",
)
def interests(career: CareerDep) -> Response:
    """RIASEC dimensions and the interest keywords `interests.keywords` accepts."""
    return ok(career.vocabulary())


@router.get(
    "/model",
    response_model=Envelope[ModelInfo],
    responses=errors(401, 503),
    summary="Active career model",
)
def model(career: CareerDep) -> Response:
    """The active model's card, feature spec, careers and metrics."""
    return ok(career.model_info())
