"""Image embeddings through OpenAI's wire format against our JSON route, in the same run:
`POST /v1/embeddings` (base64 images, `encoding_format` base64 and float) against
`POST /api/v1/clip/json/embed/image` (base64 images, the envelope), on one server.

    .venv/bin/python -m benchmarks.openai_embeddings [--seconds 5] [--rounds 2] [--clients 1,8]
    .venv/bin/python -m benchmarks.openai_embeddings --vit     # ViT-B-32, random weights
    .venv/bin/python -m benchmarks.openai_embeddings --parts serialise   # in-process, 1 s

Every request carries the same 8 JPEGs (640x480) as base64; the image cache is off and
admission wide open, so each request decodes and embeds its images. The routes take turns
in each round, so drift in the machine's speed hits them alike. By default the server
runs the tiny fixture CLIP: its forward pass is cheap, so what differs between the routes
(parsing, the answer's serialisation and size) shows; with --vit the ViT-B-32's compute
dominates, as in production on CPU. Clients are closed-loop, in this process.

`serialise` times what the routes do differently once the vectors exist, in-process: the
envelope route's answer (EmbeddingResult through `ok()`, pydantic) against OpenAI's
(`openai_format.embeddings_response`, orjson from numpy) in float and base64.
"""

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import numpy as np

from app.schemas.openai import EncodingFormat
from benchmarks.common import photo_jpeg, start_server, timed_ms, wait_ready

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "clip"
IMAGES_PER_REQUEST = 8
ROUTES = {
    "/api/v1/clip/json/embed/image": "envelope, floats",
    "/v1/embeddings base64": "OpenAI, base64",
    "/v1/embeddings float": "OpenAI, floats",
}


@dataclass
class Cell:
    images: int = 0
    seconds: float = 0.0
    bytes_out: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, other: "Cell") -> None:
        self.images += other.images
        self.seconds += other.seconds
        self.bytes_out += other.bytes_out
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def request_for(route: str, model: str, images: list[str]) -> tuple[str, dict[str, object]]:
    if route.startswith("/api/"):
        return route, {"images": images}
    path, encoding = route.split()
    return path, {
        "model": model,
        "input": images,
        "modality": "image",
        "encoding_format": encoding,
    }


async def run_cell(
    base: str, route: str, model: str, clients: int, seconds: float, jpegs: list[str]
) -> Cell:
    cell = Cell()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def one(i: int) -> tuple[int, int]:
            batch = [jpegs[(i + k) % len(jpegs)] for k in range(IMAGES_PER_REQUEST)]
            path, body = request_for(route, model, batch)
            response = await client.post(path, json=body)
            if response.status_code != 200:
                cell.errors += 1
                return 0, 0
            return IMAGES_PER_REQUEST, len(response.content)

        await asyncio.gather(*(one(i) for i in range(clients)))  # warm the connections
        start = time.perf_counter()
        deadline = start + seconds
        last = start

        async def loop(c: int) -> None:
            nonlocal last
            i = c
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                count, size = await one(i)
                done = time.perf_counter()
                if count:
                    cell.images += count
                    cell.bytes_out += size
                    cell.latencies_ms.append((done - t0) * 1000)
                last = max(last, done)
                i += clients

        await asyncio.gather(*(loop(c) for c in range(clients)))
        cell.seconds = last - start
    return cell


def envelope_body(vectors: np.ndarray) -> bytes:
    """What ClipService.embed_images and `ok()` make of the rows (the envelope route)."""
    from app.core.envelope import ok
    from app.schemas.clip import Embedding, EmbeddingResult, ModelRef

    ref = ModelRef(
        name="ViT-B-32", pretrained="openai", dimension=512, backend="torch", precision="fp32"
    )
    embeddings = [
        Embedding(index=i, name=None, embedding=row.tolist()) for i, row in enumerate(vectors)
    ]
    return bytes(ok(EmbeddingResult(model=ref, embeddings=embeddings)).body)


def openai_body(vectors: np.ndarray, encoding: EncodingFormat) -> bytes:
    """What /v1/embeddings makes of the same rows."""
    from app.core.openai_format import embeddings_response

    response = embeddings_response(
        vectors, encoding_format=encoding, model="ViT-B-32/openai", prompt_tokens=0
    )
    return bytes(response.body)


def serialise_table() -> None:
    """Milliseconds and bytes to turn n 512-d vectors into each route's answer body."""
    print("\n| vectors (512-d) | answer | ms (median of 50) | body KB |\n|---|---|---|---|")
    for n in (8, 64):
        vectors = np.random.default_rng(n).standard_normal((n, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        builds: list[tuple[str, Callable[[], bytes]]] = [
            ("envelope, floats (pydantic)", partial(envelope_body, vectors)),
            ("OpenAI, floats (orjson)", partial(openai_body, vectors, "float")),
            ("OpenAI, base64", partial(openai_body, vectors, "base64")),
        ]
        for name, build in builds:
            ms = float(np.median(timed_ms(build, runs=50, warm=5)))
            print(f"| {n} | {name} | {ms:.3f} | {len(build()) / 1024:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--threads", type=int, default=2, help="TORCH_THREADS")
    parser.add_argument("--vit", action="store_true", help="ViT-B-32 (random weights)")
    parser.add_argument("--parts", default="http,serialise")
    args = parser.parse_args()
    if "serialise" in args.parts:
        serialise_table()
    if "http" not in args.parts:
        return

    settings = {
        "CAREER_MODEL_DIR": str(ROOT / "tests" / "fixtures" / "career_models"),
        "CLIP_CACHE_MB": "0",
        "CLIP_MAX_WAITING": "100000",
        "CLIP_DEVICE": "cpu",
        "TORCH_THREADS": str(args.threads),
        "LOG_FORMAT": "json",
        "UPLOAD_DIR": str(ROOT / "benchmarks" / ".cache" / "uploads"),
    }
    if args.vit:
        from benchmarks.clip import CACHE, MODEL, vit_weights

        settings |= {
            "CLIP_MODEL_NAME": MODEL,
            "CLIP_PRETRAINED": str(vit_weights()),
            "CLIP_MODEL_CACHE_DIR": str(CACHE / "clip"),
        }
        model_name = MODEL
    else:
        settings |= {
            "CLIP_MODEL_NAME": "tiny-clip",
            "CLIP_PRETRAINED": str(FIXTURE / "tiny-clip.pt"),
            "CLIP_MODEL_CONFIG": str(FIXTURE / "tiny-clip.json"),
            "CLIP_MODEL_CACHE_DIR": str(ROOT / "benchmarks" / ".cache" / "clip-fixture"),
            "CLIP_BACKEND": "torch",
            "CLIP_PRECISION": "fp32",
        }
        model_name = "tiny-clip (fixture)"
    levels = [int(c) for c in args.clients.split(",")]
    jpegs = [base64.b64encode(photo_jpeg(seed)).decode() for seed in range(16)]
    server, base = start_server(settings)
    try:
        wait_ready(base, timeout=600)
        model = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
        cells: dict[tuple[str, int], Cell] = {}
        for clients in levels:
            for _ in range(args.rounds):
                for route in ROUTES:
                    cell = asyncio.run(run_cell(base, route, model, clients, args.seconds, jpegs))
                    cells.setdefault((route, clients), Cell()).add(cell)
                    print(
                        f"  {route:32} {clients:3} clients: {cell.rate:7.1f} img/s, "
                        f"p50 {cell.pct(50):7.1f} ms, errors {cell.errors}",
                        file=sys.stderr,
                    )
    finally:
        server.terminate()
        server.wait(timeout=60)

    print(
        f"\nImage embeddings, CLIP {model_name} on CPU (TORCH_THREADS={args.threads}), "
        f"{IMAGES_PER_REQUEST} base64 JPEGs (640x480) per request, {args.rounds} alternating "
        f"rounds of {args.seconds:.0f} s per cell, cache off\n"
    )
    print("| route | answer | clients | img/s | p50 / p99 ms | answer KB | vs envelope |")
    print("|---|---|---|---|---|---|---|")
    for clients in levels:
        reference = cells[(next(iter(ROUTES)), clients)].rate
        for route, answer in ROUTES.items():
            c = cells[(route, clients)]
            requests = len(c.latencies_ms) or 1
            errors = f" ({c.errors} errors)" if c.errors else ""
            print(
                f"| `{route}` | {answer} | {clients} | {c.rate:.1f}{errors} | "
                f"{c.pct(50):.0f} / {c.pct(99):.0f} | {c.bytes_out / requests / 1024:.1f} | "
                f"{c.rate / reference:.2f}x |"
            )


if __name__ == "__main__":
    main()
