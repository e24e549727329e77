"""What one image costs the server besides the model, step by step, and end to end.

    .venv/bin/python -m benchmarks.overhead [--seconds 10] [--runs 200] [--images photos]

1. In-process, ms per image, one row per step of `/clip/embed/image` with 8 JPEGs of
   640x480 a request: parse (Starlette's multipart parser, python-multipart, over the
   whole body), decode (header, structure scan, reduced decode of the crop's region),
   preprocess (one resample to the input, normalise), model (the fixture model's image
   tower through the runtime that serves), serialise (the envelope with 8 embeddings: float
   and base64). Decode and preprocess are shown for CLIP_PREPROCESS=exact and fast (at
   2x and 1x the input: the factor is measured per model), with ViT-B-32's geometry
   (224 px input), which is what they cost in production.
2. End to end: a server with the fixture model (one worker, cache off) answering 8
   connections that each post 8 JPEGs of 640x480 a request for `--seconds`; the server's
   CPU time (utime + stime from /proc/<pid>/stat) per image, alone and with its descendants
   (the decode workers, which run under the forkserver), for each CLIP_PREPROCESS mode.

Target (2-vCPU dev VM): end-to-end server CPU, decode workers included, <= 3.0 ms per image.
"""

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import photo_jpeg, start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "clip"
TINY = {
    "CLIP_MODEL_NAME": "tiny-clip",
    "CLIP_PRETRAINED": str(FIXTURE / "tiny-clip.pt"),
    "CLIP_MODEL_CONFIG": str(FIXTURE / "tiny-clip.json"),
    "CAREER_MODEL_DIR": str(ROOT / "tests" / "fixtures" / "career_models"),
    "CLIP_CACHE_MB": "0",
    "CLIP_MAX_WAITING": "100000",
    "WORKERS": "1",
    "LOG_FORMAT": "json",
}
VIT_PREPROCESS = {
    "size": 224,
    "mean": (0.48145466, 0.4578275, 0.40821073),
    "std": (0.26862954, 0.26130258, 0.27577711),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
IMAGES = 8
CLIENTS = 8
BOUNDARY = "benchmarkboundary1234"


def sample_photos() -> list[bytes]:
    """IMAGES real photos as 640x480 JPEGs (quality 90): scikit-learn's two bundled sample
    pictures (a temple, 105 KB, and a flower, 52 KB), each also mirrored and shifted so no
    two files are alike."""
    from sklearn.datasets import load_sample_images

    out = []
    for i in range(IMAGES):
        picture = load_sample_images().images[i % 2]
        image = Image.fromarray(np.roll(picture[:, :: (-1) ** (i // 2)], 40 * i, axis=1))
        buffer = io.BytesIO()
        image.resize((640, 480), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def test_images(kind: str) -> list[bytes]:
    """`synthetic`: smooth gradients under noise (117 KB each); `photos`: `sample_photos`."""
    return sample_photos() if kind == "photos" else [photo_jpeg(seed) for seed in range(IMAGES)]


def per_image_ms(fn: Callable[[], object], runs: int, images: int = 1) -> float:
    """Median ms of `fn` over `runs` calls (after two warm-ups), divided by `images`."""
    for _ in range(2):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples) / images


def multipart_body(jpegs: list[bytes]) -> bytes:
    parts = []
    for i, data in enumerate(jpegs):
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def parse_ms(body: bytes, runs: int) -> float:
    """Starlette's multipart parser over one request body, each part read back."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartParser

    headers = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY}"})

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):  # as uvicorn hands it over
            yield body[start : start + 65536]

    async def once() -> None:
        form = await MultiPartParser(headers, stream(), max_files=64).parse()
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                await value.read()
                await value.close()

    return per_image_ms(lambda: asyncio.run(once()), runs, IMAGES)


def in_process(runs: int, jpegs: list[bytes]) -> list[tuple[str, float]]:
    from app.config import Settings
    from app.core.envelope import ok
    from app.schemas.clip import ModelRef
    from app.services.clip.preprocess import ImageSpec, region_of, to_array
    from app.services.clip.selection import select
    from app.services.clip.service import EmbeddingRow, Embeddings
    from app.utils.image_structure import StructureLimits, check_structure
    from app.utils.images import load_image, open_image
    from app.utils.vectors import encode_rows

    rows: list[tuple[str, float]] = [
        ("parse (multipart, 8 JPEGs a body)", parse_ms(multipart_body(jpegs), runs))
    ]
    limits = StructureLimits(max_scans=64, max_chunks=1024)
    for mode, factor in (("exact", 2), ("fast", 2), ("fast", 1)):
        spec = ImageSpec.from_open_clip(VIT_PREPROCESS, mode, factor)  # type: ignore[arg-type]
        assert spec is not None
        decoded = []

        def decode(spec: ImageSpec = spec, decoded: list[Any] = decoded) -> None:
            decoded.clear()
            for data in jpegs:
                check_structure(data, limits, name="image")
                image = open_image(data, max_pixels=40_000_000)
                decoded.append(load_image(image, min_side=spec.min_side, region=region_of(spec)))

        out = np.empty((3, 224, 224), dtype=np.float32)
        rows.append(
            (
                f"decode ({mode}: header, scan, draft to >= {spec.min_side} px)",
                per_image_ms(decode, runs, IMAGES),
            )
        )
        rows.append(
            (
                f"preprocess ({mode}: resample the crop, normalise)",
                per_image_ms(
                    lambda spec=spec, out=out, decoded=decoded: [
                        to_array(d, spec, out) for d in decoded
                    ],
                    runs,
                    IMAGES,
                ),
            )
        )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        clip_model_name=TINY["CLIP_MODEL_NAME"],
        clip_pretrained=TINY["CLIP_PRETRAINED"],
        clip_model_config=TINY["CLIP_MODEL_CONFIG"],
        clip_device="cpu",
        clip_model_cache_dir=ROOT / "benchmarks" / ".cache" / "clip",
    )
    selection = select(settings, "cpu", max_batch=IMAGES)
    tiny_spec = ImageSpec.from_open_clip(selection.meta.preprocess)
    assert tiny_spec is not None
    batch = np.stack([to_array(d.image, tiny_spec) for d in decoded])
    rows.append(
        (
            f"model (fixture, {selection.chosen.name}, batch of 8)",
            per_image_ms(lambda: selection.runtime.encode_images([batch]), runs, IMAGES),
        )
    )
    vectors = selection.runtime.encode_images([batch])
    ref = ModelRef(
        name="tiny-clip",
        pretrained="x",
        dimension=vectors.shape[1],
        backend="onnx",
        precision="int8",
    )
    for fmt in ("float", "base64"):

        def serialise(fmt: Any = fmt) -> bytes:
            answer = Embeddings(
                model=ref,
                encoding_format=fmt,
                embeddings=[
                    EmbeddingRow(index=i, name=f"{i}.jpg", embedding=row)
                    for i, row in enumerate(encode_rows(vectors, fmt))
                ],
            )
            return bytes(ok(answer).body)

        rows.append(
            (
                f"serialise (envelope, 8 x {vectors.shape[1]} floats, {fmt})",
                per_image_ms(serialise, runs, IMAGES),
            )
        )
    vit = np.random.default_rng(0).standard_normal((IMAGES, 512)).astype(np.float32)
    vit /= np.linalg.norm(vit, axis=1, keepdims=True)
    for fmt in ("float", "base64"):

        def serialise_vit(fmt: Any = fmt) -> bytes:
            answer = Embeddings(
                model=ref,
                encoding_format=fmt,
                embeddings=[
                    EmbeddingRow(index=i, name=None, embedding=row)
                    for i, row in enumerate(encode_rows(vit, fmt))
                ],
            )
            return bytes(ok(answer).body)

        rows.append(
            (
                f"serialise (envelope, 8 x 512 floats, {fmt})",
                per_image_ms(serialise_vit, runs, IMAGES),
            )
        )
    selection.runtime.close()
    return rows


def cpu_seconds(root: int) -> tuple[float, float]:
    """utime + stime, in seconds, of `root` and of `root` with every live descendant."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    own = stats.get(root, (0, 0.0))[1]
    total, frontier = own, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, seconds) in stats.items():
            if ppid == parent:
                total += seconds
                frontier.append(pid)
    return own, total


async def load(base: str, seconds: float, jpegs: list[bytes]) -> tuple[int, int]:
    """(images answered, errors) from CLIENTS closed-loop connections."""
    images = errors = 0
    deadline = time.monotonic() + seconds
    files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(jpegs)]

    async def client() -> None:
        nonlocal images, errors
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            while time.monotonic() < deadline:
                response = await http.post("/api/v1/clip/embed/image", files=files)
                if response.status_code == 200:
                    images += IMAGES
                else:
                    errors += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return images, errors


def end_to_end(seconds: float, jpegs: list[bytes]) -> list[tuple[str, float, float, float, int]]:
    rows = []
    for mode in ("exact", "fast"):
        server, base = start_server({**TINY, "CLIP_PREPROCESS": mode})
        try:
            wait_ready(base)
            asyncio.run(load(base, 2.0, jpegs))  # warm-up: workers started, code paths hot
            own0, all0 = cpu_seconds(server.pid)
            started = time.monotonic()
            images, errors = asyncio.run(load(base, seconds, jpegs))
            elapsed = time.monotonic() - started
            own1, all1 = cpu_seconds(server.pid)
            rows.append(
                (
                    mode,
                    (own1 - own0) * 1000 / max(images, 1),
                    (all1 - all0) * 1000 / max(images, 1),
                    images / elapsed,
                    errors,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-image serving cost, step by step.")
    parser.add_argument("--seconds", type=float, default=10.0, help="end-to-end load per mode")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per in-process step")
    parser.add_argument("--parts", default="steps,server")
    parser.add_argument(
        "--images", choices=("synthetic", "photos"), default="synthetic", help="test_images"
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    jpegs = test_images(args.images)
    kb = sum(map(len, jpegs)) / len(jpegs) / 1024
    print(f"images: {args.images}, 640x480 JPEGs, {kb:.0f} KB on average", file=sys.stderr)
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", file=sys.stderr)
    if "steps" in parts:
        rows = in_process(args.runs, jpegs)
        print("\n| step (in-process, 640x480 JPEGs, ViT-B-32 geometry) | ms per image |\n|---|---|")
        for name, ms in rows:
            print(f"| {name} | {ms:.3f} |")
    if "server" in parts:
        print(
            f"\n| /clip/embed/image, fixture model, {IMAGES} JPEGs of 640x480 a request, "
            f"{CLIENTS} connections, cache off, 1 worker, {args.seconds:.0f} s | server CPU "
            "ms/image | with decode workers ms/image | img/s | errors |\n|---|---|---|---|---|"
        )
        for mode, own, total, rate, errors in end_to_end(args.seconds, jpegs):
            print(f"| CLIP_PREPROCESS={mode} | {own:.2f} | {total:.2f} | {rate:.0f} | {errors} |")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)", file=sys.stderr)


if __name__ == "__main__":
    main()
