"""Hostile images through HTTP, against a real server: every class costs a bounded amount,
is answered (200 or a clear 4xx), and the server goes on serving."""

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.hostile_files import (
    base64_body,
    block_flood_gif,
    chunk_flood_png,
    extreme_png,
    marker_flood_jpeg,
    photo,
    png,
    rgba_bomb_png,
    scan_flood_jpeg,
)
from tests.conftest import CAREER_MODELS, TINY_CLIP_ENV, assert_error, serve

pytestmark = pytest.mark.integration

EMBED = "/api/v1/clip/embed/image"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, base = serve(
        CAREER_MODELS, tmp_path_factory.mktemp("hostile"), **TINY_CLIP_ENV, CLIP_CACHE_MB="0"
    )
    yield base
    _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def embed(base: str, *images: bytes, timeout: float = 60) -> httpx.Response:
    files = [
        ("images", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)
    ]
    return httpx.post(f"{base}{EMBED}", files=files, timeout=timeout)


def alive(base: str) -> None:
    assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
    normal = embed(base, png(photo((320, 240))))
    assert normal.status_code == 200, normal.text


@pytest.mark.parametrize("size", [(2, 100_000), (100_000, 2), (10, 50_000), (50_000, 10)])
def test_extreme_aspect_ratios_are_embedded(server: str, size: tuple[int, int]) -> None:
    """Resized whole, 2 x 100,000 would become 224 x 11,200,000 pixels; only the crop's
    region is resampled, so it costs what a small square does."""
    data = extreme_png(*size)
    assert len(data) < 2_000
    response = embed(server, data)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["embeddings"][0]["embedding"]) > 0
    alive(server)


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("scan flood", scan_flood_jpeg(3000), "JPEG scans"),
        ("marker flood", marker_flood_jpeg(10 * 1024 * 1024 - 64), "JPEG markers"),
        ("chunk flood", chunk_flood_png(500_000), "PNG chunks"),
        ("block flood", block_flood_gif(1_000_000), "GIF blocks"),
    ],
)
def test_structure_floods_are_refused_before_decoding(
    server: str, name: str, data: bytes, what: str
) -> None:
    replaced = _health_clip(server)["decode_workers_replaced"]
    error = assert_error(embed(server, data), 422, "IMAGE_TOO_COMPLEX")
    assert what in error["message"], name
    assert error["details"][0]["field"] == "images.0"
    # The scan runs in a decode worker, which refuses the file and goes on serving.
    assert _health_clip(server)["decode_workers_replaced"] == replaced
    alive(server)


def test_eight_marker_floods_in_one_request(server: str) -> None:
    flood = marker_flood_jpeg(10 * 1024 * 1024 - 64)
    assert_error(embed(server, *[flood] * 8), 422, "IMAGE_TOO_COMPLEX")
    alive(server)


def test_base64_images_are_decoded_and_refused_alike(server: str) -> None:
    body = base64_body([png(photo((320, 240))), scan_flood_jpeg(3000)])
    response = httpx.post(
        f"{server}/api/v1/clip/json/embed/image",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    error = assert_error(response, 422, "IMAGE_TOO_COMPLEX")
    assert error["details"][0]["field"] == "images.1"
    ok = httpx.post(
        f"{server}/api/v1/clip/json/embed/image",
        content=base64_body([png(photo((320, 240), seed=s)) for s in range(3)]),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert ok.status_code == 200 and len(ok.json()["data"]["embeddings"]) == 3


def test_a_normal_request_is_answered_while_two_bombs_decode(server: str) -> None:
    """Two 40 MP RGBA PNGs hold both decode workers; a small image still gets through."""
    answers: dict[str, Any] = {}

    def send(key: str, data: bytes) -> None:
        answers[key] = embed(server, data).status_code

    bombs = [threading.Thread(target=send, args=(f"bomb{i}", rgba_bomb_png())) for i in range(2)]
    for thread in bombs:
        thread.start()
    normal = httpx.post(
        f"{server}/api/v1/clip/match",
        files={"image": ("a.png", png(photo((320, 240))), "image/png")},
        data={"tags": "a red circle,a blue square"},
        timeout=30,
    )
    for thread in bombs:
        thread.join(60)
    assert normal.status_code == 200, normal.text
    assert set(answers.values()) <= {200, 422}, answers  # decoded, or over the deadline


def _health_clip(base: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base}/health", timeout=5).json()["data"]["models"]["clip"])


def test_a_decoder_over_its_budget_costs_one_worker_and_one_answer(tmp_path: Path) -> None:
    """The next decoder bomb nobody has found yet: the worker decoding it is replaced, the
    image is answered 422, and the server (and the other images) never notice. A flat
    12 MP progressive JPEG whose last scan is repeated 50 times (within IMAGE_MAX_SCANS)
    needs 36 MB and half a second or more (over the deadline here); a 40 MP RGBA PNG
    needs 160 MB at once (over the memory limit)."""
    process, base = serve(
        CAREER_MODELS,
        tmp_path,
        **TINY_CLIP_ENV,
        CLIP_CACHE_MB="0",
        IMAGE_DECODE_TIMEOUT_MS="150",
        IMAGE_DECODE_MAX_MB="64",
    )
    try:
        slow = assert_error(embed(base, scan_flood_jpeg(50)), 422, "IMAGE_TOO_COMPLEX")
        assert "IMAGE_DECODE_TIMEOUT_MS" in slow["message"]
        large = assert_error(embed(base, rgba_bomb_png()), 422, "IMAGE_TOO_COMPLEX")
        assert "IMAGE_DECODE_MAX_MB" in large["message"]
        assert _health_clip(base)["decode_workers_replaced"] >= 2
        for _ in range(3):  # every worker, the replacements included, serves again
            alive(base)
        assert process.poll() is None
    finally:
        _stop(process)
