"""Schemas of the OpenAI-compatible routes (`/v1`), field for field as OpenAI's API has them,
so that clients written for OpenAI (the `openai` packages, LangChain) work unchanged."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from app.schemas.clip import MAX_LIST, EncodingFormat

Input = Annotated[str, Field(min_length=1)]
Modality = Literal["text", "image"]


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request, plus Infinity's `modality` for images."""

    model_config = ConfigDict(
        extra="forbid",  # as OpenAI: an unknown argument is refused, not silently ignored
        json_schema_extra={
            "examples": [
                {"model": "ViT-B-32/openai", "input": ["a red circle", "a photo of a dog"]},
                {
                    "model": "ViT-B-32/openai",
                    "input": ["data:image/png;base64,iVBORw0KGgo..."],
                    "modality": "image",
                    "encoding_format": "base64",
                },
            ]
        },
    )

    # One string is a list of one: errors then name `input.0`, never a branch of a union.
    input: Annotated[
        list[Input],
        Field(min_length=1, max_length=MAX_LIST),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                        "maxItems": MAX_LIST,
                    },
                ]
            },
            mode="validation",
        ),
    ] = Field(
        description="One text or image, or a list of them (1..MAX_TEXTS_PER_REQUEST texts of "
        "at most MAX_TEXT_LENGTH characters, or 1..MAX_IMAGES_PER_REQUEST images). Images, "
        'with `modality: "image"`, are data URIs or plain base64; URLs are refused, the '
        "service never fetches anything. Token arrays are refused: CLIP has its own tokenizer.",
    )
    model: str = Field(
        description="The served model's id, as `GET /v1/models` lists it.",
        examples=["ViT-B-32/openai"],
    )
    encoding_format: EncodingFormat = Field(
        default="float",
        description="`float`: lists of numbers; `base64`: each vector's little-endian float32 "
        "bytes in base64, as OpenAI encodes them (about a quarter of the size).",
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Accepted only when it equals the model's dimension: CLIP's embeddings "
        "cannot be shortened without losing what they mean.",
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")
    modality: Modality = Field(
        default="text",
        description="`image` when every input is an image (Infinity's extension; official "
        'clients send it as an extra body field, e.g. `extra_body={"modality": "image"}`).',
    )
    # Whether `input` came as one string rather than a list (errors then name `input`).
    _single: bool = PrivateAttr(default=False)

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        # Said plainly: LangChain sends token arrays unless check_embedding_ctx_length=False.
        if isinstance(value, list) and any(isinstance(item, int | list) for item in value):
            raise ValueError(
                "token arrays are not accepted (CLIP tokenizes texts itself): send strings; "
                "with LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False"
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _remember_single(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        request = handler(data)
        request._single = isinstance(data, dict) and isinstance(data.get("input"), str)
        return request

    def fields(self) -> list[str]:
        """The name of each input in errors: `input` alone, or `input.<i>` in a list."""
        return ["input"] if self._single else [f"input.{i}" for i in range(len(self.input))]


class EmbeddingObject(BaseModel):
    """One input's embedding."""

    object: Literal["embedding"] = Field(default="embedding", description="Always `embedding`.")
    index: int = Field(description="Position of the input in the request.", examples=[0])
    embedding: list[float] | str = Field(
        description="The L2-normalised vector: numbers, or with `encoding_format: base64` "
        "its little-endian float32 bytes in base64."
    )


class Usage(BaseModel):
    """What the request cost in tokens, as OpenAI counts it."""

    prompt_tokens: int = Field(
        description="CLIP tokens the model read, summed over the texts: each text's own, "
        "without the start and end markers or padding, at most the context length less "
        "those two (75 for ViT-B-32: longer texts are cut there). Images count 0."
    )
    total_tokens: int = Field(description="Equal to prompt_tokens.")


class EmbeddingsResponse(BaseModel):
    """OpenAI's embeddings response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456]}],
                    "model": "ViT-B-32/openai",
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                }
            ]
        }
    )

    object: Literal["list"] = Field(default="list", description="Always `list`.")
    data: list[EmbeddingObject] = Field(description="One embedding per input, in input order.")
    model: str = Field(description="The model that embedded them.", examples=["ViT-B-32/openai"])
    usage: Usage = Field(description="Tokens read.")


class ModelCard(BaseModel):
    """A served model as OpenAI's `GET /v1/models` lists it."""

    id: str = Field(
        description="open_clip model name / weights tag (a checkpoint file's tag carries its "
        "sha256), as the CLIP routes' `model` and /health name it.",
        examples=["ViT-B-32/openai"],
    )
    object: Literal["model"] = Field(default="model", description="Always `model`.")
    created: int = Field(
        description="Unix time at which this process loaded the model.", examples=[1764663300]
    )
    owned_by: str = Field(description="Who serves it: this service.", examples=["skill-compass-ml"])


class ModelList(BaseModel):
    """OpenAI's model list: the models `/v1/embeddings` takes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "ViT-B-32/openai",
                            "object": "model",
                            "created": 1764663300,
                            "owned_by": "skill-compass-ml",
                        }
                    ],
                }
            ]
        }
    )

    object: Literal["list"] = Field(default="list", description="Always `list`.")
    data: list[ModelCard] = Field(description="The served embedding models.")


class OpenAIErrorBody(BaseModel):
    """What went wrong, in OpenAI's words."""

    message: str = Field(
        description="A sentence for people.", examples=["The model `gpt-4` does not exist."]
    )
    type: str = Field(
        description="`invalid_request_error`, `authentication_error` (401), "
        "`permission_error` (403), `rate_limit_error` (429) or `server_error` (5xx).",
        examples=["invalid_request_error"],
    )
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None = Field(
        description="The same stable code as the envelope routes' `error.code`.",
        examples=["NOT_FOUND"],
    )


class OpenAIError(BaseModel):
    """Every error of a `/v1` route, in OpenAI's shape."""

    error: OpenAIErrorBody = Field(description="The error.")
