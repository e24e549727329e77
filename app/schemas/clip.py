"""Schemas of the CLIP routes."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.domain.enums import Backend, EncodingFormat, Precision, Verdict

Base64Image = Annotated[
    str,
    Field(
        min_length=1,
        description="An image as plain base64 or a data URI (`data:image/png;base64,...`). "
        "The declared type is ignored: the content decides.",
    ),
]
Text = Annotated[str, Field(min_length=1)]
# How embeddings are written: JSON numbers, or (OpenAI's convention) each vector's
# little-endian float32 bytes in base64: a quarter of the size, and exact.
# Two 16x16 PNGs (red, blue) for the JSON routes' examples: small enough to read, and real
# images, so Swagger's "Try it out" sends a request that works.
_RED_PNG = "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAGklEQVR42mM8ISfHQApgYiARjGoY1TB0NAAATx8BJMixHB8AAAAASUVORK5CYII="
_BLUE_PNG = "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAGklEQVR42mOUkzvBQApgYiARjGoY1TB0NAAATcsBJFnp5p8AAAAASUVORK5CYII="
_VIT: JsonDict = {
    "name": "ViT-B-32",
    "pretrained": "openai",
    "dimension": 512,
    "backend": "onnx",
    "precision": "int8",
}
_DOG: JsonDict = {
    "tag": "a photo of a dog",
    "similarity": 0.291,
    "probability": 0.83,
    "relevant": True,
}
_CITY: JsonDict = {
    "tag": "a city at night",
    "similarity": 0.142,
    "probability": 0.17,
    "relevant": False,
}
ENCODING_FORMAT_DOC = (
    "`float` (default): each embedding as a list of numbers. `base64`: each embedding as "
    "its little-endian float32 bytes in base64 (OpenAI's convention), about a quarter of "
    "the size and bit-exact."
)
# Upper bound of any list in a request, whatever the settings allow (they are checked too).
MAX_LIST = 1000


class ModelRef(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_VIT]})

    name: str = Field(examples=["ViT-B-32"], description="open_clip model name (CLIP_MODEL_NAME).")
    pretrained: str = Field(
        examples=["openai"], description="Weights tag or checkpoint file and hash."
    )
    dimension: int = Field(examples=[512], description="Length of each embedding.")
    backend: Backend = Field(
        examples=["onnx"], description="What ran the model (CLIP_BACKEND, or measured)."
    )
    precision: Precision = Field(
        examples=["int8"], description="Number format it ran in (CLIP_PRECISION, or measured)."
    )


class TagMatch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DOG]})

    tag: str = Field(description="The tag as sent (trimmed).", examples=["a photo of a dog"])
    similarity: float = Field(description="Cosine similarity of image and tag, -1..1.")
    probability: float = Field(
        description="Softmax over the request's tags with the model's logit scale."
    )
    relevant: bool = Field(description="similarity >= CLIP_MATCH_THRESHOLD.")


class CompareResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "similarity": 0.934,
                    "score": 93.4,
                    "verdict": "similar",
                    "thresholds": {"similar": 0.9, "related": 0.7},
                    "tags_a": [_DOG, _CITY],
                    "tags_b": [_DOG, _CITY],
                    "model": _VIT,
                }
            ]
        }
    )

    similarity: float = Field(description="Cosine similarity of the two images, -1..1.")
    score: float = Field(description="max(0, similarity) x 100.")
    verdict: Verdict = Field(
        description="`similar`, `related` or `different`, by `thresholds` (CLIP_SIMILAR_THRESHOLD, "
        "CLIP_RELATED_THRESHOLD)."
    )
    thresholds: dict[str, float] = Field(description="Similarity thresholds behind the verdict.")
    tags_a: list[TagMatch] | None = Field(
        description="image_a against each tag (when tags were sent)."
    )
    tags_b: list[TagMatch] | None = Field(
        description="image_b against each tag (when tags were sent)."
    )
    model: ModelRef = Field(description="The model that answered.")


class MatchResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"matches": [_DOG, _CITY], "best": _DOG, "threshold": 0.25, "model": _VIT}]
        }
    )

    matches: list[TagMatch] = Field(description="One entry per tag, in request order.")
    best: TagMatch = Field(description="The tag with the highest similarity.")
    threshold: float = Field(description="CLIP_MATCH_THRESHOLD: `relevant` means at least this.")
    model: ModelRef = Field(description="The model that answered.")


class Embedding(BaseModel):
    index: int = Field(description="Position of the image or text in the request, from 0.")
    name: str | None = Field(description="File name (images) or the text itself (texts).")
    embedding: list[float] | str = Field(
        description="L2-normalised vector: numbers, or with `encoding_format=base64` its "
        "little-endian float32 bytes in base64."
    )


class EmbeddingResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": _VIT,
                    "encoding_format": "base64",
                    "embeddings": [
                        {"index": 0, "name": "portfolio.jpg", "embedding": "9wQ8vQ...(2,048 bytes)"}
                    ],
                }
            ]
        }
    )

    model: ModelRef = Field(description="The model that answered.")
    encoding_format: EncodingFormat = Field(default="float", description=ENCODING_FORMAT_DOC)
    embeddings: list[Embedding] = Field(description="One per image or text, in request order.")


class CompareJson(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"image_a": _RED_PNG, "image_b": _BLUE_PNG, "tags": ["red", "blue"]}]
        },
    )

    image_a: Base64Image
    image_b: Base64Image
    tags: list[str] | None = Field(
        default=None,
        max_length=MAX_LIST,
        description="Optional tags to match both images against.",
    )


class MatchJson(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"image": _RED_PNG, "tags": ["a red square", "a photo of a dog"]}]
        },
    )

    image: Base64Image
    tags: list[str] = Field(
        min_length=1, max_length=MAX_LIST, description="Tags; each may also be comma-separated."
    )


class EmbedImagesJson(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"images": [_RED_PNG, _BLUE_PNG], "encoding_format": "float"}]
        },
    )

    images: list[Base64Image] = Field(
        min_length=1, max_length=256, description="1..MAX_IMAGES_PER_REQUEST images."
    )
    encoding_format: EncodingFormat = Field(default="float", description=ENCODING_FORMAT_DOC)


class EmbedTextsJson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text] = Field(
        min_length=1,
        max_length=MAX_LIST,
        examples=[["a red circle", "a photo of a dog"]],
        description="1..MAX_TEXTS_PER_REQUEST texts of at most MAX_TEXT_LENGTH characters.",
    )
    encoding_format: EncodingFormat = Field(default="float", description=ENCODING_FORMAT_DOC)
