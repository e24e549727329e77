"""The official clients against a real server (the fixture CLIP, API keys on): OpenAI's
`openai` package and LangChain's `OpenAIEmbeddings` work unchanged, and their vectors are
those of the native routes called in the same test."""

import base64
import io
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings
from PIL import Image

from research.clip_fixture.shapes import render
from tests.conftest import CAREER_MODELS, TINY_CLIP_ENV, serve

pytestmark = pytest.mark.integration

KEY = "openai-client-key"
TEXTS = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple circle"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("openai-clients")
    shutil.copytree(CAREER_MODELS, tmp / "models")
    process, base = serve(
        tmp / "models",
        tmp,
        API_KEYS=KEY,
        MAX_UPLOAD_MB="1",
        MAX_TEXTS_PER_REQUEST="8",
        **TINY_CLIP_ENV,
    )
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def png(color: str, shape: str, seed: int) -> bytes:
    out = io.BytesIO()
    render(color, shape, size=80, seed=seed).save(out, format="PNG")
    return out.getvalue()


IMAGES = [png("red", "circle", 1), png("blue", "square", 2), png("green", "triangle", 3)]


def data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def native(server: str, path: str, **kwargs: Any) -> np.ndarray:
    """Vectors of a native route (the envelope), as float32."""
    response = httpx.post(f"{server}{path}", headers={"X-API-Key": KEY}, timeout=60, **kwargs)
    assert response.status_code == 200, response.text
    rows = [item["embedding"] for item in response.json()["data"]["embeddings"]]
    return np.array(rows, dtype=np.float32)


def native_texts(server: str, texts: list[str]) -> np.ndarray:
    return native(server, "/api/v1/clip/embed/text", json={"texts": texts})


def native_images(server: str, images: list[bytes]) -> np.ndarray:
    files = [("images", (f"{i}.png", image, "image/png")) for i, image in enumerate(images)]
    return native(server, "/api/v1/clip/embed/image", files=files)


def assert_same_vectors(got: Any, expected: np.ndarray) -> None:
    """Equal once both are float32 (the service's own precision), so cosine 1.0."""
    vectors = np.array(got, dtype=np.float32)
    assert vectors.shape == expected.shape
    assert np.array_equal(vectors, expected)
    cosine = np.sum(vectors * expected, axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-6)


# --- openai ------------------------------------------------------------------------------------


def test_models_list(client: openai.OpenAI, server: str) -> None:
    models = client.models.list().data
    assert len(models) == 1
    ref = httpx.post(
        f"{server}/api/v1/clip/embed/text", json={"texts": ["x"]}, headers={"X-API-Key": KEY}
    ).json()["data"]["model"]
    assert models[0].id == f"{ref['name']}/{ref['pretrained']}"
    assert models[0].object == "model" and models[0].owned_by == "skill-compass-ml"


def test_texts_by_default_travel_as_base64_and_the_client_decodes_them(
    client: openai.OpenAI, model: str, server: str
) -> None:
    """Without encoding_format the client asks for base64 and decodes it itself."""
    raw = client.embeddings.with_raw_response.create(model=model, input=TEXTS)
    wire = raw.http_response.json()
    assert all(isinstance(item["embedding"], str) for item in wire["data"])
    result = raw.parse()
    assert [item.index for item in result.data] == list(range(len(TEXTS)))
    assert result.model == model and result.object == "list"
    assert result.usage.prompt_tokens == result.usage.total_tokens == 15  # 3 tokens each
    assert_same_vectors([item.embedding for item in result.data], native_texts(server, TEXTS))


def test_texts_as_floats(client: openai.OpenAI, model: str, server: str) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=model, input=TEXTS, encoding_format="float"
    )
    wire = raw.http_response.json()
    assert all(isinstance(item["embedding"], list) for item in wire["data"])
    result = raw.parse()
    assert_same_vectors([item.embedding for item in result.data], native_texts(server, TEXTS))


def test_texts_as_base64_asked_for_explicitly(
    client: openai.OpenAI, model: str, server: str
) -> None:
    """An explicit base64 is handed back as the strings; they decode as little-endian
    float32."""
    result = client.embeddings.create(model=model, input=TEXTS[:2], encoding_format="base64")
    encoded = [item.embedding for item in result.data]
    assert all(isinstance(value, str) for value in encoded)
    decoded = [np.frombuffer(base64.b64decode(value), dtype="<f4") for value in encoded]  # type: ignore[arg-type]
    assert_same_vectors(decoded, native_texts(server, TEXTS[:2]))


def test_one_string(client: openai.OpenAI, model: str, server: str) -> None:
    result = client.embeddings.create(model=model, input="a red circle", user="user-1")
    assert len(result.data) == 1 and result.usage.prompt_tokens == 3
    assert_same_vectors([result.data[0].embedding], native_texts(server, ["a red circle"]))


@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_images_through_extra_body(
    client: openai.OpenAI, model: str, server: str, encoding_format: str | None
) -> None:
    extra: dict[str, Any] = {} if encoding_format is None else {"encoding_format": encoding_format}
    result = client.embeddings.create(
        model=model,
        input=[data_uri(IMAGES[0]), base64.b64encode(IMAGES[1]).decode(), data_uri(IMAGES[2])],
        extra_body={"modality": "image"},
        **extra,
    )
    assert result.usage.prompt_tokens == 0
    got = [item.embedding for item in result.data]
    if encoding_format == "base64":
        got = [np.frombuffer(base64.b64decode(value), dtype="<f4") for value in got]  # type: ignore[arg-type]
    assert_same_vectors(got, native_images(server, IMAGES))


def test_errors_reach_the_client_as_its_own_exceptions(
    client: openai.OpenAI, model: str, server: str
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert missing.value.code == "NOT_FOUND" and missing.value.param == "model"
    assert missing.value.type == "invalid_request_error" and model in str(missing.value)
    with pytest.raises(openai.UnprocessableEntityError) as too_many:
        client.embeddings.create(model=model, input=["x"] * 9)
    assert too_many.value.code == "VALIDATION_ERROR" and "At most 8 texts" in str(too_many.value)
    with pytest.raises(openai.UnprocessableEntityError) as url:
        client.embeddings.create(
            model=model, input=["https://example.com/a.png"], extra_body={"modality": "image"}
        )
    assert url.value.param == "input.0" and "never fetches" in str(url.value)
    noise = np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, format="PNG")
    with pytest.raises(openai.APIStatusError) as too_large:
        client.embeddings.create(
            model=model, input=[data_uri(big.getvalue())], extra_body={"modality": "image"}
        )
    assert too_large.value.status_code == 413 and too_large.value.code == "IMAGE_TOO_LARGE"
    wrong_key = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong_key.embeddings.create(model=model, input="x")
    assert refused.value.code == "UNAUTHORIZED" and refused.value.type == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()


# --- LangChain ----------------------------------------------------------------------------------


def test_langchain_embed_documents_and_query(model: str, server: str) -> None:
    embeddings = OpenAIEmbeddings(
        model=model,
        base_url=f"{server}/v1",
        api_key=KEY,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,  # CLIP tokenizes itself: send strings
        chunk_size=2,  # several requests, batched by LangChain, stitched back in order
        max_retries=0,
    )
    documents = embeddings.embed_documents(TEXTS)
    assert len(documents) == len(TEXTS)
    assert_same_vectors(documents, native_texts(server, TEXTS))
    query = embeddings.embed_query("a blue square")
    assert_same_vectors([query], native_texts(server, ["a blue square"]))
    assert int(np.argmax(np.array(documents) @ np.array(query))) == 1


def test_langchain_embeds_images_with_modality_in_model_kwargs(model: str, server: str) -> None:
    embeddings = OpenAIEmbeddings(
        model=model,
        base_url=f"{server}/v1",
        api_key=KEY,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        model_kwargs={"extra_body": {"modality": "image"}},
        max_retries=0,
    )
    vectors = embeddings.embed_documents([data_uri(image) for image in IMAGES])
    assert_same_vectors(vectors, native_images(server, IMAGES))
