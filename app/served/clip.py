"""CLIP as a served model: its service, routes (ours and OpenAI's), body limits and status."""

from collections.abc import Mapping

from app.api import openai_compat
from app.api.v1 import clip
from app.config import Settings
from app.schemas.health import ClipStatus
from app.served.contract import ServedModelSpec
from app.services.clip.service import ClipService


async def start_loading(service: ClipService, settings: Settings) -> None:
    """On CLIP's own thread, not a worker of the task group: shutdown never waits for a
    load under way (close() discards what it produces)."""
    service.start()


def body_limits(settings: Settings) -> Mapping[str, int]:
    image = settings.image_body_bytes
    many = image * settings.max_images_per_request
    return {
        "/api/v1/clip/compare": 2 * image,
        "/api/v1/clip/json/compare": 2 * image,
        "/api/v1/clip/match": image,
        "/api/v1/clip/json/match": image,
        "/api/v1/clip/embed/image": many,
        "/api/v1/clip/json/embed/image": many,
        "/v1/embeddings": many,  # images too, and the body says which only once it is read
    }


CLIP = ServedModelSpec(
    name="clip",
    build=ClipService,
    serve=start_loading,
    status=ClipStatus,
    api_routers=(clip.router,),
    routers=(openai_compat.router,),
    body_limits=body_limits,
)
