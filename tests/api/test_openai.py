"""The OpenAI-compatible routes (`/v1/embeddings`, `/v1/models`) through HTTP, on the tiny
CLIP fixture: OpenAI's shapes exactly, the same vectors as the native routes, token usage,
and every error in OpenAI's shape with the envelope routes' statuses and codes."""

import base64
import io
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image

from app.config import Settings
from app.main import create_app
from app.services.clip.runtime import TorchRuntime
from research.clip_fixture.shapes import render
from tests.api.test_operations import requests_of, scrape, value
from tests.conftest import CAREER_MODELS, TINY_CLIP, wait_for_models

pytestmark = pytest.mark.integration

MAX_IMAGES = 3
MAX_TEXTS = 5
TEXTS = ["a red circle", "a blue square", "a green triangle"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("openai")
    shutil.copytree(CAREER_MODELS, tmp / "models")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        career_model_dir=tmp / "models",
        upload_dir=tmp / "uploads",
        clip_model_cache_dir=tmp / "cache",
        max_upload_mb=0.5,
        max_images_per_request=MAX_IMAGES,
        max_texts_per_request=MAX_TEXTS,
        **TINY_CLIP,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_for_models(client)
        yield client


@pytest.fixture(scope="module")
def model_id(client: TestClient) -> str:
    return str(client.get("/v1/models").json()["data"][0]["id"])


def png(color: str, shape: str, seed: int = 0) -> bytes:
    out = io.BytesIO()
    render(color, shape, size=72, seed=seed).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def embeddings(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def native(client: TestClient, path: str, body: dict[str, Any]) -> np.ndarray:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return np.array([e["embedding"] for e in response.json()["data"]["embeddings"]], np.float32)


def floats(body: dict[str, Any]) -> np.ndarray:
    return np.array([item["embedding"] for item in body["data"]], np.float32)


def openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check OpenAI's error shape, exactly, and return its `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code and error["message"] and isinstance(error["type"], str)
    assert response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(error)


# --- success ----------------------------------------------------------------------------------


def test_models_lists_the_served_model_by_the_name_the_clip_routes_give(
    client: TestClient,
) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and len(body["data"]) == 1
    card = body["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by"}
    ref = client.post("/api/v1/clip/embed/text", json={"texts": ["x"]}).json()["data"]["model"]
    assert card["id"] == f"{ref['name']}/{ref['pretrained']}"
    assert card["id"].startswith("tiny-clip/tiny-clip.pt:sha256:")
    assert card["object"] == "model" and card["owned_by"] == "skill-compass-ml"
    assert 0 < time.time() - card["created"] < 3600  # loaded by this process


def test_text_embeddings_in_openais_shape_equal_the_native_routes(
    client: TestClient, model_id: str
) -> None:
    body = embeddings(client, model=model_id, input=TEXTS, user="someone")
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == model_id
    assert [set(item) for item in body["data"]] == [{"object", "index", "embedding"}] * 3
    assert [item["object"] for item in body["data"]] == ["embedding"] * 3
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    expected = native(client, "/api/v1/clip/embed/text", {"texts": TEXTS})
    got = floats(body)
    assert np.array_equal(got, expected)  # bit for bit, once read back as float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_one_string_is_one_input(client: TestClient, model_id: str) -> None:
    body = embeddings(client, model=model_id, input="a red circle")
    assert len(body["data"]) == 1
    expected = native(client, "/api/v1/clip/embed/text", {"texts": ["a red circle"]})
    assert np.array_equal(floats(body), expected)


def test_base64_is_each_vectors_little_endian_float32(client: TestClient, model_id: str) -> None:
    plain = floats(embeddings(client, model=model_id, input=TEXTS))
    body = embeddings(client, model=model_id, input=TEXTS, encoding_format="base64")
    encoded = [item["embedding"] for item in body["data"]]
    assert all(isinstance(e, str) for e in encoded)
    little = np.array([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in encoded])
    assert little.shape == plain.shape and np.array_equal(little, plain)
    big = np.array([np.frombuffer(base64.b64decode(e), dtype=">f4") for e in encoded])
    assert not np.allclose(big, plain, equal_nan=True)


def test_images_as_data_uris_and_plain_base64_equal_the_native_routes(
    client: TestClient, model_id: str
) -> None:
    images = [png("red", "circle", 1), png("blue", "square", 2), png("green", "star", 3)]
    inputs = [
        "data:image/png;base64," + b64(images[0]),
        b64(images[1]),
        "data:image/jpeg;base64," + b64(images[2]),  # the declared type is ignored
    ]
    body = embeddings(client, model=model_id, input=inputs, modality="image")
    assert body["usage"] == {"prompt_tokens": 0, "total_tokens": 0}  # images count no tokens
    expected = native(client, "/api/v1/clip/json/embed/image", {"images": [b64(i) for i in images]})
    assert np.array_equal(floats(body), expected)
    encoded = embeddings(
        client, model=model_id, input=inputs, modality="image", encoding_format="base64"
    )
    decoded = [np.frombuffer(base64.b64decode(e["embedding"]), "<f4") for e in encoded["data"]]
    assert np.array_equal(np.array(decoded), expected)
    # An image embedding is not the text embedding of its base64 (modality is honoured).
    as_text = floats(embeddings(client, model=model_id, input=inputs[1][:200]))
    assert not np.allclose(as_text[0], expected[1], atol=1e-3)


def test_text_and_image_of_the_same_thing_match(client: TestClient, model_id: str) -> None:
    captions = ["a red circle", "a blue square", "a green star"]
    texts = floats(embeddings(client, model=model_id, input=captions))
    image = png("blue", "square", 5)
    vector = floats(embeddings(client, model=model_id, input=b64(image), modality="image"))[0]
    assert captions[int(np.argmax(texts @ vector))] == "a blue square"


def test_dimensions_equal_to_the_models_is_accepted(client: TestClient, model_id: str) -> None:
    body = embeddings(client, model=model_id, input="x", dimensions=64)
    assert len(body["data"][0]["embedding"]) == 64


def test_requests_count_in_the_same_metrics(client: TestClient, model_id: str) -> None:
    before = scrape(client.get)
    images = [b64(png("orange", "circle", 11)), b64(png("orange", "circle", 12))]
    embeddings(client, model=model_id, input=images, modality="image")
    embeddings(client, model=model_id, input=images, modality="image")  # from the cache
    after = scrape(client.get)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        requests_of(after, "/v1/embeddings", "POST", "200")
        - requests_of(before, "/v1/embeddings", "POST", "200")
        == 2
    )
    assert (
        grew("skill_compass_ml_clip_cache_misses_total") == 2
        and grew("skill_compass_ml_clip_cache_hits_total") == 2
    )


# --- usage --------------------------------------------------------------------------------


def open_clip_read(text: str, context_length: int = 16) -> int:
    """Tokens open_clip feeds the model for `text`, between its start and end markers."""
    tokenizer = SimpleTokenizer(context_length=context_length)
    row = tokenizer([text])[0].tolist()
    return row.index(tokenizer.eot_token_id) - 1


@pytest.mark.parametrize(
    "texts",
    [
        ["a red circle"],  # 3 words, 3 tokens
        ["wow !", "!"],  # "!" is token id 0, the padding's id: it counts
        ["Straße über naïve 東京 😀 &amp; 42"],
        ["lots of words " * 20],  # over the fixture's 16-token context: cut at 14
        TEXTS,
    ],
)
def test_usage_counts_the_clip_tokens_the_model_reads(
    client: TestClient, model_id: str, texts: list[str]
) -> None:
    body = embeddings(client, model=model_id, input=texts)
    expected = sum(open_clip_read(text) for text in texts)
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    if texts == ["a red circle"]:
        assert expected == 3  # start and end markers are not counted
    if len(texts[0]) > 200:
        assert expected == 14  # the fixture's context of 16, less the two markers


# --- errors, in OpenAI's shape ------------------------------------------------------------


def test_a_wrong_model_is_404(client: TestClient, model_id: str) -> None:
    error = openai_error(
        client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}),
        404,
        "NOT_FOUND",
    )
    assert error["param"] == "model" and error["type"] == "invalid_request_error"
    assert "text-embedding-3-small" in error["message"] and model_id in error["message"]


@pytest.mark.parametrize(
    ("modality", "count", "limit"), [("text", MAX_TEXTS + 1, MAX_TEXTS), ("image", 4, 3)]
)
def test_too_many_inputs_is_422(
    client: TestClient, model_id: str, modality: str, count: int, limit: int
) -> None:
    value = b64(png("red", "circle")) if modality == "image" else "a red circle"
    response = client.post(
        "/v1/embeddings",
        json={"model": model_id, "input": [value] * count, "modality": modality},
    )
    error = openai_error(response, 422, "VALIDATION_ERROR")
    assert error["param"] == "input"
    assert f"At most {limit}" in error["message"] and f"got {count}" in error["message"]


def test_a_text_over_max_text_length_is_422(client: TestClient, model_id: str) -> None:
    response = client.post("/v1/embeddings", json={"model": model_id, "input": ["ok", "x" * 301]})
    error = openai_error(response, 422, "VALIDATION_ERROR")
    assert error["param"] == "input.1" and "300 characters" in error["message"]


def test_an_oversize_image_is_413(client: TestClient, model_id: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG")
    assert len(out.getvalue()) > 0.5 * 1024 * 1024
    response = client.post(
        "/v1/embeddings",
        json={"model": model_id, "input": [b64(out.getvalue())], "modality": "image"},
    )
    error = openai_error(response, 413, "IMAGE_TOO_LARGE")
    assert error["param"] == "input.0"


def test_a_body_over_the_routes_limit_is_413_before_it_is_read(
    client: TestClient, model_id: str
) -> None:
    response = client.post(
        "/v1/embeddings",
        content=b"x" * (MAX_IMAGES * (700 * 1024 + 64 * 1024) + 1),
        headers={"content-type": "application/json"},
    )
    error = openai_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "limit" in error["message"]


def test_a_body_over_the_limit_streamed_without_length_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_IMAGES * 800):
            yield b" " * 1024

    response = client.post(
        "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}
    )
    openai_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_crash_is_a_500_in_openais_shape(make_settings: Callable[..., Settings]) -> None:
    """The request middleware's last-resort 500 follows the path's dialect too."""
    app = create_app(make_settings())

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as crashing:
        error = openai_error(crashing.get("/v1/boom"), 500, "INTERNAL_ERROR")
        assert error["type"] == "server_error" and "a bug" not in error["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://example.com/cat.png",
        "HTTPS://EXAMPLE.COM/CAT.PNG",
        "  ftp://example.com/cat.png",
        "file:///etc/passwd",
        "file:/etc/passwd",
        "s3://bucket/cat.png",
        "gopher://x",
    ],
)
def test_a_url_is_refused_never_fetched(client: TestClient, model_id: str, url: str) -> None:
    response = client.post(
        "/v1/embeddings", json={"model": model_id, "input": [url], "modality": "image"}
    )
    error = openai_error(response, 422, "VALIDATION_ERROR")
    assert error["param"] == "input.0"
    assert "URL" in error["message"] and "never fetches" in error["message"]


@pytest.mark.parametrize(
    ("value", "status", "code"),
    [
        ("@@not base64@@", 400, "INVALID_IMAGE"),
        (b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), 400, "INVALID_IMAGE"),
        (b64(b"just some text, not an image"), 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_undecodable_images_keep_their_status_and_code(
    client: TestClient, model_id: str, value: str, status: int, code: str
) -> None:
    response = client.post(
        "/v1/embeddings", json={"model": model_id, "input": value, "modality": "image"}
    )
    assert openai_error(response, status, code)["param"] == "input"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({}, "input", "Field required"),
        ({"input": []}, "input", "at least 1 item"),
        ({"input": ""}, "input.0", "at least 1 character"),
        ({"input": [[1, 2, 3]]}, "input", "token arrays"),
        ({"input": [1, 2, 3]}, "input", "check_embedding_ctx_length=False"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"input": "x", "modality": "audio"}, "modality", "image"),
        ({"input": "x", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "x", "temperature": 1}, "temperature", "Extra inputs"),
    ],
)
def test_validation_errors_are_422_naming_the_field(
    client: TestClient, model_id: str, body: dict[str, Any], param: str, words: str
) -> None:
    response = client.post("/v1/embeddings", json={"model": model_id, **body})
    error = openai_error(response, 422, "VALIDATION_ERROR")
    assert error["param"] == param and words in error["message"], error


def test_a_missing_model_and_a_non_json_body_are_422(client: TestClient) -> None:
    error = openai_error(
        client.post("/v1/embeddings", json={"input": "x"}), 422, "VALIDATION_ERROR"
    )
    assert error["param"] == "model"
    response = client.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in openai_error(response, 422, "VALIDATION_ERROR")["message"]


def test_dimensions_other_than_the_models_are_refused_not_faked(
    client: TestClient, model_id: str
) -> None:
    response = client.post(
        "/v1/embeddings", json={"model": model_id, "input": "x", "dimensions": 32}
    )
    error = openai_error(response, 422, "VALIDATION_ERROR")
    assert error["param"] == "dimensions" and "64" in error["message"]


def test_unknown_v1_routes_and_methods_answer_in_openais_shape(client: TestClient) -> None:
    error = openai_error(client.post("/v1/completions", json={}), 404, "NOT_FOUND")
    assert "/v1/completions" in error["message"] and error["param"] is None
    openai_error(client.get("/v1/embeddings"), 405, "METHOD_NOT_ALLOWED")


def test_the_envelope_routes_keep_the_envelope(client: TestClient) -> None:
    for response in (
        client.post("/api/v1/nope"),
        client.post("/api/v1/clip/embed/text", json={}),
        client.get("/v1x/models"),
    ):
        body = response.json()
        assert set(body) == {"success", "data", "error", "meta"}, body
        assert body["success"] is False and body["error"]["code"]


# --- states and keys ------------------------------------------------------------------------


def test_clip_not_loaded_is_503(make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # CLIP disabled
    for response in (
        client.get("/v1/models"),
        client.post("/v1/embeddings", json={"model": "any", "input": "x"}),
    ):
        error = openai_error(response, 503, "MODEL_UNAVAILABLE")
        assert error["type"] == "server_error" and "CLIP" in error["message"]


def test_keys_guard_v1_and_any_bearer_passes_when_none_are_set(
    make_client: Callable[..., TestClient],
) -> None:
    open_client = make_client()
    anyone = {"Authorization": "Bearer sk-whatever"}
    assert open_client.get("/v1/models", headers=anyone).status_code == 503  # past the key
    client = make_client(api_keys="k-one", admin_api_keys="a-one", max_upload_mb=0.1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k-one"}):
        for response in (
            client.get("/v1/models", headers=headers),
            client.post("/v1/embeddings", json={"model": "m", "input": "x"}, headers=headers),
        ):
            error = openai_error(response, 401, "UNAUTHORIZED")
            assert error["type"] == "authentication_error" and error["param"] is None
    # The key is judged before the body is read: a body over the route's limit (8 images of
    # 0.1 MB) without a key is a 401, not a 413.
    huge = b"x" * (2 * 1024 * 1024)
    response = client.post("/v1/embeddings", content=huge, headers={"content-type": "text/plain"})
    openai_error(response, 401, "UNAUTHORIZED")
    for key in ({"Authorization": "Bearer k-one"}, {"X-API-Key": "k-one"}, {"X-API-Key": "a-one"}):
        assert client.get("/v1/models", headers=key).status_code == 503, key  # past the key


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """While cleared, every image forward pass waits: a model kept busy on demand."""
    opened = threading.Event()
    opened.set()  # open while the model loads (its parity probe embeds images)
    original = TorchRuntime.encode_images

    def held(self: TorchRuntime, rows: Any) -> np.ndarray:
        assert opened.wait(30), "gate never opened"
        return original(self, rows)

    monkeypatch.setattr(TorchRuntime, "encode_images", held)
    yield opened
    opened.set()


def test_overload_is_429_with_retry_after(
    make_client: Callable[..., TestClient], gate: threading.Event
) -> None:
    client = make_client(**TINY_CLIP, clip_max_waiting=1, clip_cache_mb=0)
    model = client.get("/v1/models").json()["data"][0]["id"]
    gate.clear()

    def post(seed: int) -> httpx.Response:
        image = b64(png("red", "circle", seed))
        body = {"model": model, "input": image, "modality": "image"}
        return client.post("/v1/embeddings", json=body)

    results: list[httpx.Response] = []
    busy = threading.Thread(target=lambda: results.append(post(1)))
    busy.start()
    deadline = time.monotonic() + 30
    while client.get("/health").json()["data"]["models"]["clip"]["in_flight"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    refused = post(2)
    gate.set()
    busy.join(30)
    error = openai_error(refused, 429, "OVERLOADED")
    assert error["type"] == "rate_limit_error" and refused.headers["retry-after"] == "1"
    assert results[0].status_code == 200
