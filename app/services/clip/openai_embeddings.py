"""The OpenAI-compatible embeddings use case on the served CLIP model.

Inputs come as OpenAI's clients send them: texts, or, with Infinity's `modality: "image"`,
images as data URIs or plain base64. They go through the same ClipService methods as the
native routes (`text_vectors`, `image_vectors`), so the same limits, admission, batching,
content cache, hostile-input rules and metrics apply. URLs are refused: the service never
fetches anything on a caller's behalf (no requests to internal hosts, no unbounded
downloads). Usage is counted with CLIP's own tokenizer.
"""

import functools
import re
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from app.core.exceptions import InvalidInput, NotFound
from app.schemas.clip import ModelRef
from app.schemas.openai import EmbeddingsRequest, ModelCard
from app.services.clip.engine import ClipEngine, ImageInput
from app.services.clip.service import ClipService
from app.services.clip.tokenizer import ClipTokenizer
from app.utils.images import decode_base64, take_each

OWNED_BY = "skill-compass-ml"
# A URI scheme (`http:`, `file:`, `s3:`...): base64 has no colon, so nothing with one is an
# image we could decode, and only `data:` carries the image itself.
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class EmbeddingBatch:
    model: str  # the id the request named, as GET /v1/models lists it
    vectors: np.ndarray  # (n, dim) float32, L2-normalised, in input order
    prompt_tokens: int


def model_id(ref: ModelRef) -> str:
    """open_clip model name / weights tag: what /health and the CLIP routes' `model` say."""
    return f"{ref.name}/{ref.pretrained}"


def served_models(clip: ClipService) -> list[ModelCard]:
    """The one model this service serves; ModelLoading / ModelUnavailable until it loads."""
    ref = clip.ref()
    return [ModelCard(id=model_id(ref), created=clip.loaded_at or 0, owned_by=OWNED_BY)]


async def embed(
    clip: ClipService, request: EmbeddingsRequest, *, max_image_bytes: int
) -> EmbeddingBatch:
    """Embeddings of the request's inputs with the served model, in input order."""
    ref = clip.ref()
    served = model_id(ref)
    if request.model != served:
        raise NotFound(
            f"The model `{request.model}` does not exist; this service serves `{served}`.",
            details=[{"field": "model"}],
        )
    if request.dimensions is not None and request.dimensions != ref.dimension:
        raise InvalidInput(
            f"This model's embeddings have {ref.dimension} dimensions, and CLIP's cannot be "
            f"shortened: leave `dimensions` out or send {ref.dimension}.",
            details=[{"field": "dimensions", "message": f"must be {ref.dimension}"}],
        )
    inputs, fields = request.input, request.fields()
    if request.modality == "image":
        images = [  # each text released once decoded (take_each)
            ImageInput(_image_bytes(value, fields[i], max_image_bytes), fields[i])
            for i, value in take_each(inputs)
        ]
        vectors = await clip.image_vectors(images, field="input")
        return EmbeddingBatch(served, vectors, prompt_tokens=0)
    vectors = await clip.text_vectors(inputs, field="input")
    # After text_vectors: it has bounded every text's length, and BPE's cost grows with it.
    engine = clip.engine
    assert engine is not None  # it has just embedded the texts
    tokens = await anyio.to_thread.run_sync(count_tokens, engine, inputs)
    return EmbeddingBatch(served, vectors, prompt_tokens=tokens)


def _image_bytes(value: str, field: str, max_bytes: int) -> bytes:
    scheme = _SCHEME.match(value)
    if scheme is not None and scheme.group(1).lower() != "data":
        raise InvalidInput(
            f"{field} is a URL ({scheme.group(1).lower()}:), and this service never fetches "
            "anything on a caller's behalf: send the image itself, as a data URI or base64.",
            details=[{"field": field}],
        )
    return decode_base64(value, max_bytes=max_bytes, name=field)


@functools.lru_cache(maxsize=4)
def _tokenizer(context_length: int, clean: str) -> ClipTokenizer:
    return ClipTokenizer(context_length, clean)


def count_tokens(engine: ClipEngine, texts: list[str]) -> int:
    """CLIP tokens the model reads for these texts: each text's own tokens, without the
    start and end markers and without padding, cut at the context length as the model
    cuts them (see ClipTokenizer.count)."""
    spec = engine.meta.tokenizer
    if spec is not None:
        tokenizer = _tokenizer(int(spec["context_length"]), str(spec.get("clean", "lower")))
        return sum(tokenizer.count(text) for text in texts)
    # A tokenizer ClipTokenizer cannot reproduce (a Hugging Face one): its rows, less the
    # padding (id 0 in open_clip's tokenizers) and the two markers.
    rows = engine.tokenize(texts)
    return int(sum(max(0, int(np.count_nonzero(row)) - 2) for row in rows))
