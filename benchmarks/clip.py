"""CLIP benchmark on a randomly initialised ViT-B-32 (the real model's compute, no download).

    .venv/bin/python -m benchmarks.clip [--runs 20]

One run prints: raw open_clip time for two 640x480 JPEGs in one batch (Image.open, open_clip
preprocess, encode_image; and encode_image alone) against the
`compare` endpoint's time for the same pair over HTTP (same machine, same model), single-image
and batch-of-32 throughput, and peak RSS of the benchmark process and of the server.
Targets: endpoint <= 1.2x raw model time; peak RSS with ViT-B-32 loaded < 1.5 GB.
"""

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from app.config import Settings
from app.services.clip.service import ClipService
from benchmarks.common import free_port, timed_ms

MODEL = "ViT-B-32"


def photo_jpeg(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A 640x480 JPEG with photo-like structure (smooth gradients plus noise)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [np.sin(x / (40 + 10 * c) + seed) * np.cos(y / (30 + 7 * c)) for c in range(3)], -1
    )
    pixels = np.clip(127 + 90 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def timed(fn, runs: int, warm: int = 2) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(timed_ms(fn, runs, warm))


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="CLIP latency, throughput and memory benchmark.")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="clip-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        clip_model_name=MODEL,
        clip_pretrained="",
        clip_model_cache_dir=cache,
        clip_device="cpu",
        torch_threads=args.threads,
    )
    service = ClipService(settings)
    service.load()
    assert service.model is not None, service.error
    jpegs = [photo_jpeg(1), photo_jpeg(2)]

    from app.services.clip.service import ImageInput

    images = [service.decode(ImageInput(j, f"image_{i}")) for i, j in enumerate(jpegs)]
    batch = torch.stack([service.preprocess(im) for im in images])

    def raw_open_clip() -> None:
        """What a script using open_clip directly pays: decode, preprocess, encode."""
        pils = [Image.open(io.BytesIO(j)).convert("RGB") for j in jpegs]
        tensors = torch.stack([service.preprocess(p) for p in pils])
        with torch.inference_mode():
            service.model.encode_image(tensors, normalize=True)

    with torch.inference_mode():
        model_ms = timed(lambda: service.model.encode_image(batch, normalize=True), args.runs)
    decode_ms = timed(
        lambda: torch.stack(
            [service.preprocess(service.decode(ImageInput(j, "x"))) for j in jpegs]
        ),
        args.runs,
    )
    service_ms = timed(
        lambda: service.compare(ImageInput(jpegs[0], "a"), ImageInput(jpegs[1], "b"), []), args.runs
    )

    one = [images[0]]
    single_ms = timed(lambda: service.encode_images(one), args.runs)
    many = [images[i % 2] for i in range(32)]
    batch32_ms = timed(lambda: service.encode_images(many), max(3, args.runs // 5))
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_HOST": "127.0.0.1",
        "FASTAPI_PORT": str(port),
        "CLIP_MODEL_NAME": MODEL,
        "CLIP_PRETRAINED": "",
        "CLIP_MODEL_CACHE_DIR": str(cache),
        "CLIP_DEVICE": "cpu",
        "TORCH_THREADS": str(args.threads),
        "LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(600):
                try:
                    if client.get(f"{base}/health/live").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            files = {
                "image_a": ("a.jpg", jpegs[0], "image/jpeg"),
                "image_b": ("b.jpg", jpegs[1], "image/jpeg"),
            }

            def call() -> None:
                response = client.post(f"{base}/api/v1/clip/compare", files=files)
                assert response.status_code == 200, response.text

            # Interleaved, so drift in the machine's speed hits both sides alike.
            raw_samples, http_samples = [], []
            for _ in range(2):
                raw_open_clip()
                call()
            for _ in range(args.runs):
                raw_samples.append(timed(raw_open_clip, 1, warm=0))
                http_samples.append(timed(call, 1, warm=0))
            raw_ms, http_ms = statistics.median(raw_samples), statistics.median(http_samples)
        server_rss = vm_hwm_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        f"\nCLIP {MODEL} (random init, fp32, {args.threads} torch threads, CPU), median of {args.runs} runs\n"
    )
    print("| measurement | ms | vs raw |\n|---|---|---|")
    rows = [
        ("raw open_clip: Image.open + preprocess + encode_image, 2 JPEGs in one batch", raw_ms),
        ("of which encode_image alone (2 preprocessed images)", model_ms),
        ("service decode + preprocess of the two JPEGs", decode_ms),
        ("ClipService.compare (decode, preprocess, encode, score)", service_ms),
        ("POST /api/v1/clip/compare over HTTP (multipart)", http_ms),
    ]
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {ms / raw_ms:.2f} |")
    print("\n| throughput | images/s | ms/image |\n|---|---|---|")
    print(f"| single image (batch 1) | {1000 / single_ms:.1f} | {single_ms:.1f} |")
    print(f"| batch of 32 | {32000 / batch32_ms:.1f} | {batch32_ms / 32:.1f} |")
    print("\n| process | peak RSS MB |\n|---|---|")
    print(f"| benchmark (ViT-B-32 loaded, batch 32 run) | {bench_rss:.0f} |")
    print(
        f"| server (python -m app, ViT-B-32 + career model, after the HTTP runs) | {server_rss:.0f} |"
    )


if __name__ == "__main__":
    main()
