"""Start-up and decode-memory behaviour of the server, measured from outside.

    .venv/bin/python -m benchmarks.clip_start [--runs 3]

1. Start: seconds from launching `python -m app` to the first 200 from /health/live, to the
   career model loaded, and to CLIP settled, for the default config with an empty weights
   cache (ViT-B-32/openai: offline here, so CLIP ends `unavailable`) and for the tiny fixture.
   Targets: live within 3 s; offline CLIP `unavailable` within 15 s.
2. Cached start: ViT-B-32 (seeded checkpoint, benchmarks/.cache) with CLIP_BACKEND=auto,
   twice: the first measures (or finds the choice a previous run remembered), the second
   loads the remembered winner and gates it against the stored reference. Seconds from
   launch to CLIP loaded, how the runtime was chosen, and whether torch is mapped into the
   server. Target: the second start has CLIP loaded within 10 s, without torch.
3. Flood: 8 concurrent uploads of 40-megapixel PNGs (16-bit grey and RGBA, 100-200 KB on
   the wire) to /clip/embed/image on the fixture model; the server's peak RSS growth (VmHWM,
   reset after a warm-up) and the answers. Target: growth < 1.2 GB, answers 200/413/429.
"""

import argparse
import io
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.common import start_server

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY = {
    "CLIP_MODEL_NAME": "tiny-clip",
    "CLIP_PRETRAINED": str(FIXTURES / "clip" / "tiny-clip.pt"),
    "CLIP_MODEL_CONFIG": str(FIXTURES / "clip" / "tiny-clip.json"),
}


def launch(extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(
        {
            "CAREER_MODEL_DIR": str(FIXTURES / "career_models"),
            "CLIP_MODEL_CACHE_DIR": tempfile.mkdtemp(prefix="clip-start-"),
            "UPLOAD_DIR": tempfile.mkdtemp(prefix="uploads-"),
            **extra,
        }
    )


def timeline(extra: dict[str, str]) -> tuple[float, float, float, str]:
    """Seconds to live, to career loaded, to CLIP settled; CLIP's final state."""
    started = time.monotonic()
    server, base = launch(extra)
    live = career = None
    try:
        while time.monotonic() - started < 120:
            try:
                if live is None and httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    live = time.monotonic() - started
                if live is not None:
                    models = httpx.get(f"{base}/health", timeout=1).json()["data"]["models"]
                    if career is None and models["career"]["state"] != "loading":
                        career = time.monotonic() - started
                    if models["clip"]["state"] != "loading":
                        return (
                            live,
                            career or float("nan"),
                            time.monotonic() - started,
                            models["clip"]["state"],
                        )
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise SystemExit("the server did not settle in 120 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def cached_start() -> tuple[float, str, str, bool]:
    """Seconds from launch to CLIP loaded, chosen_by, the runtime, torch mapped."""
    from benchmarks.clip import CACHE, vit_weights

    started = time.monotonic()
    server, base = launch(
        {
            "CLIP_MODEL_NAME": "ViT-B-32",
            "CLIP_PRETRAINED": str(vit_weights()),
            "CLIP_MODEL_CACHE_DIR": str(CACHE / "clip"),
        }
    )
    try:
        while time.monotonic() - started < 900:
            try:
                clip = httpx.get(f"{base}/health", timeout=1).json()["data"]["models"]["clip"]
                if clip["state"] != "loading":
                    settled = time.monotonic() - started
                    runtime = clip.get("runtime") or {}
                    maps = Path(f"/proc/{server.pid}/maps").read_text()
                    name = "-".join(
                        str(runtime.get(k))
                        for k in ("backend", "precision", "recipe")
                        if runtime.get(k)
                    )
                    return (
                        settled,
                        str(runtime.get("chosen_by", clip["state"])),
                        name,
                        "libtorch" in maps,
                    )
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit("CLIP did not settle in 900 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def flood() -> tuple[float, list[int], list[int]]:
    """Peak RSS growth in MB, the answers, and the upload sizes."""
    size = (7745, 5164)  # 39.99 MP, just under MAX_IMAGE_PIXELS
    rgba = Image.new("RGBA", size, (200, 30, 30, 128))
    rgba.paste((30, 30, 200, 255), (1000, 1000, 3000, 3000))
    blobs = []
    for image in (Image.new("I;16", size, 20000), rgba):
        out = io.BytesIO()
        image.save(out, format="PNG")
        blobs.append(out.getvalue())
    server, base = launch({**TINY, "CLIP_CACHE_MB": "0"})
    try:
        with httpx.Client(timeout=120) as client:
            while True:
                try:
                    if client.get(f"{base}/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            client.post(f"{base}/api/v1/clip/embed/image", files={"images": ("w.png", blobs[0])})
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset VmHWM
            before = status_kb(server.pid, "VmRSS")
            statuses: list[int] = []

            def post(blob: bytes) -> None:
                response = client.post(
                    f"{base}/api/v1/clip/embed/image", files={"images": ("b.png", blob)}
                )
                statuses.append(response.status_code)

            threads = [threading.Thread(target=post, args=(b,)) for b in blobs * 4]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            growth = (status_kb(server.pid, "VmHWM") - before) / 1024
        return growth, sorted(statuses), [len(b) for b in blobs]
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description="Start-up times and decode memory under a flood.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parts", default="start,cached,flood")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "start" in parts:
        print(
            "| config | live s | career loaded s | CLIP settled s | CLIP state |\n"
            "|---|---|---|---|---|"
        )
        for name, extra in (
            ("default (ViT-B-32/openai, empty cache, offline)", {}),
            ("tiny fixture", TINY),
        ):
            for _ in range(args.runs):
                live, career, clip, state = timeline(extra)
                print(f"| {name} | {live:.2f} | {career:.2f} | {clip:.2f} | {state} |")
    if "cached" in parts:
        print(
            "\n| ViT-B-32 seeded checkpoint, CLIP_BACKEND=auto | CLIP loaded s | chosen by "
            "| serves | torch mapped |\n|---|---|---|---|---|"
        )
        for attempt in ("first start", "second start"):
            seconds, chosen_by, name, torch = cached_start()
            print(f"| {attempt} | {seconds:.2f} | {chosen_by} | {name} | {torch} |")
    if "flood" not in parts:
        return
    growth, statuses, sizes = flood()
    print(
        f"\nflood: 8 concurrent 40 MP PNGs ({sizes[0] // 1024} KB 16-bit grey, {sizes[1] // 1024} KB RGBA), "
        f"peak RSS growth {growth:.0f} MB, answers {statuses}"
    )


if __name__ == "__main__":
    main()
