"""OpenAI-compatible routes (`/v1`): embeddings and the model list in OpenAI's wire format,
so vector stores and RAG frameworks written for OpenAI call the service unchanged. Errors
come in OpenAI's shape (`core/dialect.py`), with the envelope routes' statuses and codes."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import ClipDep, SettingsDep
from app.api.json_body import json_body, openapi_body
from app.api.responses import openai_errors
from app.core import openai_format
from app.core.security import require_api_key
from app.schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ModelList
from app.services.clip.openai_embeddings import embed, served_models

# The key as everywhere else; OpenAI's clients send it as `Authorization: Bearer <key>`.
router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])
# Read by hand: a body of base64 images is held once, not three times (`json_body`).
EmbeddingsBody = Annotated[EmbeddingsRequest, Depends(json_body(EmbeddingsRequest))]


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses=openai_errors(400, 401, 404, 413, 415, 422, 429, 503),
    summary="Embeddings (OpenAI-compatible)",
    openapi_extra=openapi_body(EmbeddingsRequest),
)
async def create_embeddings(
    body: EmbeddingsBody, clip: ClipDep, settings: SettingsDep
) -> JSONResponse:
    """Texts, or images (`modality: "image"`, data URIs or base64), to L2-normalised
    embeddings: the same model, limits and engine as `/api/v1/clip/embed/*`."""
    batch = await embed(clip, body, max_image_bytes=settings.max_upload_bytes)
    return openai_format.embeddings_response(
        batch.vectors,
        encoding_format=body.encoding_format,
        model=batch.model,
        prompt_tokens=batch.prompt_tokens,
    )


@router.get(
    "/models",
    response_model=ModelList,
    responses=openai_errors(401, 503),
    summary="Served models (OpenAI-compatible)",
)
async def list_models(clip: ClipDep) -> JSONResponse:
    """The served CLIP model, by the id `/v1/embeddings` takes as `model`."""
    return openai_format.models_response(served_models(clip))
