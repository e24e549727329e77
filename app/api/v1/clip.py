"""CLIP routes: compare two images, match an image to tags, embeddings (multipart or base64 JSON)."""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response

from app.api.deps import ClipDep, SettingsDep
from app.api.json_body import json_body, openapi_body
from app.api.responses import IMAGE_422, errors
from app.api.tags import parse_tags
from app.config import Settings
from app.core.envelope import ok
from app.schemas.clip import (
    ENCODING_FORMAT_DOC,
    MAX_LIST,
    CompareJson,
    CompareResult,
    EmbeddingResult,
    EmbedImagesJson,
    EmbedTextsJson,
    EncodingFormat,
    MatchJson,
    MatchResult,
)
from app.schemas.envelope import Envelope
from app.services.clip.service import ClipService, ImageInput
from app.utils.images import decode_base64, take_each

router = APIRouter(prefix="/clip", tags=["clip"])
IMAGE_ERRORS = errors(400, 401, 413, 415, 422, 429, 503, described={422: IMAGE_422})

# Async routes: the CLIP service awaits its engine (structure checks in a thread, decoding
# in the decode workers, inference on the batcher thread), so the event loop never blocks
# and a waiting request holds no thread. Uploads arrive spooled to disk by Starlette; each
# is read with a bound. Base64 bodies are read by hand (`json_body`): one copy at a time.
CompareBody = Annotated[CompareJson, Depends(json_body(CompareJson))]
MatchBody = Annotated[MatchJson, Depends(json_body(MatchJson))]
EmbedImagesBody = Annotated[EmbedImagesJson, Depends(json_body(EmbedImagesJson))]


async def _upload(file: UploadFile, field: str, settings: Settings) -> ImageInput:
    data = await file.read(settings.max_upload_bytes + 1)
    return ImageInput(data, field, file.filename)


def _b64(value: str, field: str, settings: Settings) -> ImageInput:
    return ImageInput(decode_base64(value, max_bytes=settings.max_upload_bytes, name=field), field)


def _b64_each(values: list[str], settings: Settings) -> list[ImageInput]:
    """Each image's bytes, its base64 text released as soon as it is decoded."""
    return [_b64(value, f"images.{i}", settings) for i, value in take_each(values)]


def _tags(raw: list[str] | None, settings: Settings, *, required: bool) -> list[str]:
    return parse_tags(
        raw, max_tags=settings.max_tags, max_length=settings.max_tag_length, required=required
    )


# One handler per use case, shared by its multipart route and its JSON twin: a route only
# turns its body into ImageInputs (in field order, before the tags are parsed) and raw tags.
async def _compare(
    clip: ClipService,
    settings: Settings,
    image_a: ImageInput,
    image_b: ImageInput,
    tags: list[str] | None,
) -> Response:
    return ok(await clip.compare(image_a, image_b, _tags(tags, settings, required=False)))


async def _match(
    clip: ClipService, settings: Settings, image: ImageInput, tags: list[str] | None
) -> Response:
    return ok(await clip.match(image, _tags(tags, settings, required=True)))


async def _embed_images(
    clip: ClipService, images: list[ImageInput], encoding_format: EncodingFormat
) -> Response:
    return ok(await clip.embed_images(images, encoding_format))


@router.post(
    "/compare",
    response_model=Envelope[CompareResult],
    responses=IMAGE_ERRORS,
    summary="Compare two images",
)
async def compare(
    image_a: Annotated[UploadFile, File(description="First image (any common format).")],
    image_b: Annotated[UploadFile, File(description="Second image.")],
    clip: ClipDep,
    settings: SettingsDep,
    tags: Annotated[
        list[str] | None,
        Form(max_length=MAX_LIST, description="Optional tags, repeated or comma-separated."),
    ] = None,
) -> Response:
    """Cosine similarity, a 0-100 score and a verdict; with tags, each image's tag matches."""
    return await _compare(
        clip,
        settings,
        await _upload(image_a, "image_a", settings),
        await _upload(image_b, "image_b", settings),
        tags,
    )


@router.post(
    "/match",
    response_model=Envelope[MatchResult],
    responses=IMAGE_ERRORS,
    summary="Match an image to text tags",
)
async def match(
    image: Annotated[UploadFile, File(description="The image.")],
    tags: Annotated[
        list[str],
        Form(max_length=MAX_LIST, description="1..MAX_TAGS tags, repeated or comma-separated."),
    ],
    clip: ClipDep,
    settings: SettingsDep,
) -> Response:
    """Per tag: cosine similarity, softmax probability and relevance; plus the best tag."""
    return await _match(clip, settings, await _upload(image, "image", settings), tags)


@router.post(
    "/embed/image",
    response_model=Envelope[EmbeddingResult],
    responses=IMAGE_ERRORS,
    summary="Image embeddings",
)
async def embed_images(
    images: Annotated[
        list[UploadFile], File(max_length=256, description="1..MAX_IMAGES_PER_REQUEST images.")
    ],
    clip: ClipDep,
    settings: SettingsDep,
    encoding_format: Annotated[EncodingFormat, Query(description=ENCODING_FORMAT_DOC)] = "float",
) -> Response:
    """L2-normalised embeddings, one per image, in upload order. `encoding_format` is a
    query parameter here (the body is the upload), a body field on the JSON routes."""
    return await _embed_images(
        clip,
        [await _upload(f, f"images.{i}", settings) for i, f in enumerate(images)],
        encoding_format,
    )


@router.post(
    "/embed/text",
    response_model=Envelope[EmbeddingResult],
    responses=errors(401, 413, 422, 429, 503),
    summary="Text embeddings",
)
async def embed_texts(body: EmbedTextsJson, clip: ClipDep) -> Response:
    """L2-normalised embeddings, one per text, in request order."""
    return ok(await clip.embed_texts(body.texts, body.encoding_format))


@router.post(
    "/json/compare",
    response_model=Envelope[CompareResult],
    responses=IMAGE_ERRORS,
    summary="Compare two base64 images",
    openapi_extra=openapi_body(CompareJson),
)
async def compare_json(body: CompareBody, clip: ClipDep, settings: SettingsDep) -> Response:
    """`/compare` for callers holding images as base64 strings or data URIs."""
    return await _compare(
        clip,
        settings,
        _b64(body.image_a, "image_a", settings),
        _b64(body.image_b, "image_b", settings),
        body.tags,
    )


@router.post(
    "/json/match",
    response_model=Envelope[MatchResult],
    responses=IMAGE_ERRORS,
    summary="Match a base64 image to text tags",
    openapi_extra=openapi_body(MatchJson),
)
async def match_json(body: MatchBody, clip: ClipDep, settings: SettingsDep) -> Response:
    """`/match` for callers holding the image as a base64 string or data URI."""
    return await _match(clip, settings, _b64(body.image, "image", settings), body.tags)


@router.post(
    "/json/embed/image",
    response_model=Envelope[EmbeddingResult],
    responses=IMAGE_ERRORS,
    summary="Embeddings of base64 images",
    openapi_extra=openapi_body(EmbedImagesJson),
)
async def embed_images_json(
    body: EmbedImagesBody, clip: ClipDep, settings: SettingsDep
) -> Response:
    """`/embed/image` for callers holding images as base64 strings or data URIs."""
    return await _embed_images(clip, _b64_each(body.images, settings), body.encoding_format)
