"""CLIP routes through HTTP, on the tiny CLIP fixture loaded exactly as real weights are."""

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from research.clip_fixture.shapes import COLORS, SHAPES, all_captions, all_pairs, caption, render
from tests.conftest import CAREER_MODELS, FIXTURES, TINY_CLIP, assert_error, wait_for_models

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("clip")
    shutil.copytree(CAREER_MODELS, tmp / "models")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        career_model_dir=tmp / "models",
        upload_dir=tmp / "uploads",
        clip_model_cache_dir=tmp / "cache",
        max_upload_mb=0.5,
        max_image_pixels=2_000_000,
        max_tags=30,
        max_images_per_request=4,
        **TINY_CLIP,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_for_models(client)
        yield client


def png(image: Image.Image, fmt: str = "PNG", **save: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def shape_png(color: str, shape: str, **kw: Any) -> bytes:
    return png(render(color, shape, size=96, **kw))


def data(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return dict(body["data"])


def match(client: TestClient, image: bytes, tags: list[str]) -> dict[str, Any]:
    return data(
        client.post(
            "/api/v1/clip/match",
            files={"image": ("x.png", image, "image/png")},
            data={"tags": tags},
        )
    )


def compare(client: TestClient, a: bytes, b: bytes, **form: Any) -> dict[str, Any]:
    return data(
        client.post(
            "/api/v1/clip/compare",
            files={"image_a": ("a.png", a, "image/png"), "image_b": ("b.png", b, "image/png")},
            data=form,
        )
    )


# --- real behaviour -------------------------------------------------------------------------


def test_zero_shot_match_picks_the_right_caption(clip_client: TestClient) -> None:
    captions = all_captions()
    rng = np.random.default_rng(2024)  # images the fixture was never trained on
    correct = 0
    trials = [(c, s) for c, s in all_pairs() for _ in range(2)]
    for color, shape in trials:
        image = png(render(color, shape, size=int(rng.integers(48, 160)), rng=rng))
        result = match(clip_client, image, captions)
        correct += result["best"]["tag"] == caption(color, shape)
    assert correct / len(trials) >= 0.9, f"{correct}/{len(trials)}"


def test_match_response_shape(clip_client: TestClient) -> None:
    tags = ["a red circle", "a blue square", "a green star"]
    result = match(clip_client, shape_png("red", "circle", seed=5), tags)
    assert [m["tag"] for m in result["matches"]] == tags
    assert sum(m["probability"] for m in result["matches"]) == pytest.approx(1, abs=1e-4)
    assert result["best"]["tag"] == "a red circle"
    assert result["best"]["relevant"] is (result["best"]["similarity"] >= result["threshold"])
    assert result["model"]["name"] == "tiny-clip"
    assert result["model"]["pretrained"].startswith("tiny-clip.pt:sha256:")


def test_tags_comma_separated_equals_repeated(clip_client: TestClient) -> None:
    image = shape_png("blue", "square", seed=1)
    repeated = match(clip_client, image, ["a blue square", "a red star"])
    joined = match(clip_client, image, ["a blue square, a red star"])
    assert repeated["matches"] == joined["matches"]


def test_image_against_itself_scores_one(clip_client: TestClient) -> None:
    image = shape_png("green", "triangle", seed=3)
    result = compare(clip_client, image, image)
    assert result["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert result["score"] == pytest.approx(100.0, abs=0.01)
    assert result["verdict"] == "similar"


def test_shifted_copy_beats_other_shape_or_colour(clip_client: TestClient) -> None:
    wins = 0
    trials = 0
    for i, (color, shape) in enumerate(all_pairs()):
        original = shape_png(color, shape, center=(0.4, 0.4), scale=0.5, seed=i)
        moved = shape_png(color, shape, center=(0.6, 0.55), scale=0.65, seed=100 + i)
        other_shape = SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
        other_color = list(COLORS)[(list(COLORS).index(color) + 1) % len(COLORS)]
        same = compare(clip_client, original, moved)["similarity"]
        for different in (
            shape_png(color, other_shape, center=(0.6, 0.55), scale=0.65, seed=200 + i),
            shape_png(other_color, shape, center=(0.6, 0.55), scale=0.65, seed=300 + i),
        ):
            trials += 1
            wins += same > compare(clip_client, original, different)["similarity"]
    assert wins / trials >= 0.9, f"{wins}/{trials}"


def test_compare_with_tags(clip_client: TestClient) -> None:
    result = compare(
        clip_client,
        shape_png("red", "circle", seed=1),
        shape_png("blue", "star", seed=2),
        tags="a red circle,a blue star",
    )
    assert result["verdict"] in {"similar", "related", "different"}
    assert result["tags_a"][0]["tag"] == "a red circle"
    best_a = max(result["tags_a"], key=lambda m: m["similarity"])["tag"]
    best_b = max(result["tags_b"], key=lambda m: m["similarity"])["tag"]
    assert (best_a, best_b) == ("a red circle", "a blue star")
    assert (
        compare(clip_client, shape_png("red", "circle"), shape_png("red", "circle"))["tags_a"]
        is None
    )


def test_embeddings_equal_direct_open_clip(clip_client: TestClient) -> None:
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=TINY_CLIP["clip_pretrained"]
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer("tiny-clip")
    images = [
        render("purple", "star", size=80, seed=9),
        render("orange", "circle", size=64, seed=4),
    ]
    texts = ["a purple star", "an orange circle"]
    with torch.inference_mode():
        direct_images = model.encode_image(
            torch.stack([preprocess(i) for i in images]), normalize=True
        )
        direct_texts = model.encode_text(tokenizer(texts), normalize=True)

    got_images = data(
        clip_client.post(
            "/api/v1/clip/embed/image",
            files=[("images", (f"{i}.png", png(im), "image/png")) for i, im in enumerate(images)],
        )
    )
    got_texts = data(clip_client.post("/api/v1/clip/embed/text", json={"texts": texts}))
    for got, direct in ((got_images, direct_images), (got_texts, direct_texts)):
        vectors = np.array([e["embedding"] for e in got["embeddings"]])
        np.testing.assert_allclose(vectors, direct.numpy(), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert got["model"]["dimension"] == vectors.shape[1]
    assert [e["name"] for e in got_images["embeddings"]] == ["0.png", "1.png"]
    assert [e["name"] for e in got_texts["embeddings"]] == texts


def test_base64_encoding_round_trips_bit_exactly_to_the_float_answers(
    clip_client: TestClient,
) -> None:
    """`encoding_format=base64` on every embedding route (a query parameter on the upload,
    a body field on the JSON routes): each vector is its little-endian float32 bytes, the
    very floats of the default answer."""
    blobs = [shape_png("red", "circle", seed=1), shape_png("blue", "square", seed=2)]
    plain = [base64.b64encode(b).decode() for b in blobs]
    texts = ["a red circle", "a photo of a dog"]
    files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    routes = {
        "multipart": lambda fmt: clip_client.post(
            "/api/v1/clip/embed/image",
            files=files,
            params={} if fmt is None else {"encoding_format": fmt},
        ),
        "json images": lambda fmt: clip_client.post(
            "/api/v1/clip/json/embed/image",
            json={"images": plain, **({} if fmt is None else {"encoding_format": fmt})},
        ),
        "texts": lambda fmt: clip_client.post(
            "/api/v1/clip/embed/text",
            json={"texts": texts, **({} if fmt is None else {"encoding_format": fmt})},
        ),
    }
    for name, post in routes.items():
        default, floats, packed = data(post(None)), data(post("float")), data(post("base64"))
        assert default["encoding_format"] == "float" and packed["encoding_format"] == "base64"
        assert default["embeddings"] == floats["embeddings"], name
        for number, text in zip(floats["embeddings"], packed["embeddings"], strict=True):
            assert isinstance(text["embedding"], str), name
            decoded = np.frombuffer(base64.b64decode(text["embedding"]), dtype="<f4")
            as_float32 = np.array(number["embedding"], dtype=np.float32)
            assert decoded.tobytes() == as_float32.tobytes(), name  # bit for bit
            assert (text["index"], text["name"]) == (number["index"], number["name"])
    wrong = clip_client.post(
        "/api/v1/clip/embed/text", json={"texts": texts, "encoding_format": "binary"}
    )
    assert_error(wrong, 422, "VALIDATION_ERROR")


def test_base64_json_forms(clip_client: TestClient) -> None:
    raw = shape_png("yellow", "square", seed=8)
    plain = base64.b64encode(raw).decode()
    uri = "data:image/jpeg;base64," + plain  # declared type is wrong on purpose: content wins
    multipart = match(clip_client, raw, ["a yellow square", "a red circle"])
    via_json = data(
        clip_client.post(
            "/api/v1/clip/json/match",
            json={"image": uri, "tags": ["a yellow square", "a red circle"]},
        )
    )
    assert via_json["matches"] == multipart["matches"]
    same = data(
        clip_client.post("/api/v1/clip/json/compare", json={"image_a": plain, "image_b": uri})
    )
    assert same["similarity"] == pytest.approx(1, abs=1e-5)
    embedded = data(clip_client.post("/api/v1/clip/json/embed/image", json={"images": [plain]}))
    assert len(embedded["embeddings"]) == 1
    error = assert_error(
        clip_client.post(
            "/api/v1/clip/json/match", json={"image": "@@not base64@@", "tags": ["x"]}
        ),
        400,
        "INVALID_IMAGE",
    )
    assert "base64" in error["message"]


# --- odd but valid images -------------------------------------------------------------------


def _odd_images() -> dict[str, bytes]:
    base = render("red", "circle", size=96, seed=1)
    rgba = base.convert("RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    frames = [base, render("blue", "square", size=96, seed=2)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    i16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    return {
        "rgba_png": png(rgba),
        "palette_png": png(base.convert("P")),
        "grey_png": png(base.convert("L")),
        "cmyk_jpeg": png(base.convert("CMYK"), "JPEG"),
        "i16_png": png(i16),
        "exif_jpeg": png(base, "JPEG", exif=exif),
        "animated_gif": gif.getvalue(),
        "webp": png(base, "WEBP"),
        "bmp": png(base, "BMP"),
        "tiff": png(base, "TIFF"),
    }


@pytest.mark.parametrize("kind", list(_odd_images()))
def test_odd_images_are_accepted(clip_client: TestClient, kind: str) -> None:
    result = match(clip_client, _odd_images()[kind], ["a red circle", "a blue square"])
    assert len(result["matches"]) == 2
    if kind in {
        "rgba_png",
        "palette_png",
        "cmyk_jpeg",
        "exif_jpeg",
        "animated_gif",
        "webp",
        "bmp",
        "tiff",
    }:
        # Colour survives the conversion (and the GIF's first frame is the red circle).
        assert result["best"]["tag"] == "a red circle", kind


def test_exif_orientation_is_applied(clip_client: TestClient) -> None:
    upright = render("green", "triangle", size=(120, 80), seed=6)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with the tag that says "turn 90 degrees clockwise to display"
    direct = compare(clip_client, png(upright), png(stored, "PNG", exif=exif))
    assert direct["similarity"] > 0.999


# --- hostile and broken input ---------------------------------------------------------------


def _bomb_png() -> bytes:
    # 4000 x 4000 pixels of one colour: tiny file, 16 MP when decoded (limit here 2 MP).
    return png(Image.new("L", (4000, 4000), 0), optimize=True)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "INVALID_IMAGE"),
        (shape_png("red", "circle")[:300], 400, "INVALID_IMAGE"),  # truncated PNG
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, 400, "INVALID_IMAGE"),  # JPEG header, no image
        (b"%PDF-1.7 definitely not an image", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"hello, world", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (_bomb_png(), 413, "IMAGE_TOO_LARGE"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (600 * 1024), 413, "IMAGE_TOO_LARGE"),  # over 0.5 MB
    ],
    ids=["empty", "truncated", "jpeg-garbage", "pdf", "text", "pixel-bomb", "too-many-bytes"],
)
def test_bad_images_get_clear_errors(
    clip_client: TestClient, payload: bytes, status: int, code: str
) -> None:
    response = clip_client.post(
        "/api/v1/clip/match",
        files={"image": ("photo.jpg", payload, "image/jpeg")},  # name and type lie on purpose
        data={"tags": ["a red circle"]},
    )
    error = assert_error(response, status, code)
    assert error["details"][0]["field"] == "image"
    # ...and the next request is served normally.
    assert match(clip_client, shape_png("red", "circle"), ["a red circle"])["best"]


def test_body_over_route_limit_is_413(clip_client: TestClient) -> None:
    huge = b"\x00" * (2 * 1024 * 1024)
    response = clip_client.post(
        "/api/v1/clip/match", files={"image": ("a.png", huge, "image/png")}, data={"tags": ["x"]}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("files", "form", "field"),
    [
        ({}, {"tags": ["a"]}, "image"),
        ({"image": ("a.png", b"x", "image/png")}, {}, "tags"),
    ],
)
def test_missing_fields_are_422(
    clip_client: TestClient, files: dict[str, Any], form: dict[str, Any], field: str
) -> None:
    response = clip_client.post("/api/v1/clip/match", files=files or None, data=form)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in [d["field"] for d in error["details"]]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([" , ,"], "at least one"),
        (["x" * 201], "longer than"),
        ([",".join(f"tag {i}" for i in range(31))], "more than 30 tags"),
    ],
)
def test_tags_are_validated(clip_client: TestClient, tags: list[str], message: str) -> None:
    response = clip_client.post(
        "/api/v1/clip/match",
        files={"image": ("a.png", shape_png("red", "circle"), "image/png")},
        data={"tags": tags},
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert message in error["details"][0]["message"]


def test_embedding_count_limits(clip_client: TestClient) -> None:
    image = shape_png("red", "circle")
    files = [("images", (f"{i}.png", image, "image/png")) for i in range(5)]
    assert_error(clip_client.post("/api/v1/clip/embed/image", files=files), 422, "VALIDATION_ERROR")
    assert_error(
        clip_client.post("/api/v1/clip/embed/text", json={"texts": []}), 422, "VALIDATION_ERROR"
    )


def test_health_reports_clip(clip_client: TestClient) -> None:
    health = clip_client.get("/health").json()["data"]
    assert health["status"] == "ok"
    assert health["models"]["clip"]["state"] == "loaded"
    assert health["models"]["clip"]["version"].startswith("tiny-clip/")


# --- no weights -----------------------------------------------------------------------------


def test_missing_weights_degrade_only_clip(make_client: Any, tmp_path: Path) -> None:
    client: TestClient = make_client(
        **{**TINY_CLIP, "clip_pretrained": str(tmp_path / "absent.pt")}
    )
    health = client.get("/health").json()["data"]
    assert health["status"] == "degraded"
    assert health["models"]["clip"]["state"] == "unavailable"
    assert "absent.pt" in health["models"]["clip"]["error"]
    assert str(tmp_path) not in client.get("/health").text  # public: no host paths
    assert str(tmp_path) not in client.get("/health/ready").text
    assert_error(client.get("/health/ready"), 503, "NOT_READY")
    error = assert_error(
        client.post(
            "/api/v1/clip/match",
            files={"image": ("a.png", shape_png("red", "circle"), "image/png")},
            data={"tags": ["a"]},
        ),
        503,
        "MODEL_UNAVAILABLE",
    )
    assert "absent.pt" in error["message"]
    assert_error(
        client.post("/api/v1/clip/embed/text", json={"texts": ["a"]}), 503, "MODEL_UNAVAILABLE"
    )
    assert (
        client.post("/api/v1/career/predict", json={"academic_scores": {"math": 80}}).status_code
        == 200
    )


def test_corrupt_weights_file_degrades(make_client: Any, tmp_path: Path) -> None:
    corrupt = tmp_path / "tiny-clip.pt"
    corrupt.write_bytes((FIXTURES / "clip" / "tiny-clip.pt").read_bytes()[:5000])
    client: TestClient = make_client(**{**TINY_CLIP, "clip_pretrained": str(corrupt)})
    assert client.get("/health").json()["data"]["models"]["clip"]["state"] == "unavailable"
    assert (
        client.post("/api/v1/career/predict", json={"academic_scores": {"math": 80}}).status_code
        == 200
    )


def test_disabled_clip_is_not_degraded(client: TestClient) -> None:
    health = client.get("/health").json()["data"]
    assert health["models"]["clip"]["state"] == "disabled"
    assert health["status"] == "ok"
    assert client.get("/health/ready").status_code == 200
    assert_error(
        client.post("/api/v1/clip/embed/text", json={"texts": ["a"]}), 503, "MODEL_UNAVAILABLE"
    )


@pytest.mark.real_weights
def test_real_vit_b_32_matches_a_photo_caption(make_client: Any) -> None:
    cache = Path("ml_models/clip")
    if not any(cache.rglob("*.bin")) and not any(cache.rglob("*.safetensors")):
        pytest.skip(
            "real ViT-B-32 weights are not in ml_models/clip (run `python -m app.prefetch` with network)"
        )
    client: TestClient = make_client(clip_enabled=True, clip_model_cache_dir=cache)
    result = match(
        client, shape_png("red", "circle"), ["a red circle", "a photo of a dog", "a page of text"]
    )
    assert result["best"]["tag"] == "a red circle"
