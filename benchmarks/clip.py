"""CLIP serving benchmark on a randomly initialised ViT-B-32 (the real model's compute, no download).

    .venv/bin/python -m benchmarks.clip [--seconds 12] [--rounds 2] [--clients 1,8,32]
    .venv/bin/python -m benchmarks.clip --device cuda      # on a GPU host, in under 5 minutes

Two servers run side by side on the same machine: *baseline* (CLIP_MAX_BATCH=1,
CLIP_PREPROCESS_WORKERS=1: one image at a time, as before the engine) and *default* (the
engine's defaults: dynamic batching, a preprocessing pool). Each cell of the table (route,
clients) is measured on both in alternating rounds, so drift in the machine's speed hits
both alike. Clients are closed-loop: each sends its next request when the last one is
answered. `/clip/match` sends one 640x480 JPEG and 5 tags; `/clip/embed/image` sends 8
JPEGs per request. The image cache is off (CLIP_CACHE_MB=0) and admission wide open, so
the table measures the engine, not the cache or the 429s.

Then: the raw model's throughput (no server) for reference, and each server's peak RSS.
Targets (2-vCPU dev VM): /clip/match at 8 clients >= 1.5x baseline img/s; p50 at 1 client
<= 1.1x baseline. On one H100: /clip/embed/image at 32 clients >= 2,000 img/s.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import free_port, photo_jpeg

MODEL = "ViT-B-32"
CAREER_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "career_models"
TAGS = ["a photo of a dog", "a city at night", "a bowl of fruit", "a red circle", "a beach"]
EMBED_IMAGES = 8
MODES = {
    "baseline": {"CLIP_MAX_BATCH": "1", "CLIP_PREPROCESS_WORKERS": "1"},
    "default": {},
}


@dataclass
class Cell:
    images: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))


def start_server(
    mode: str, device: str, threads: int, cache: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_HOST": "127.0.0.1",
        "FASTAPI_PORT": str(port),
        "CLIP_MODEL_NAME": MODEL,
        "CLIP_PRETRAINED": "",
        "CLIP_MODEL_CACHE_DIR": str(cache),
        "CAREER_MODEL_DIR": str(CAREER_MODELS),
        "CLIP_DEVICE": device,
        "TORCH_THREADS": str(threads),
        "CLIP_CACHE_MB": "0",
        "CLIP_MAX_WAITING": "100000",
        "LOG_FORMAT": "json",
        "DEBUG": "false",
        **MODES[mode],
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return server, f"http://127.0.0.1:{port}"


def wait_ready(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    health = None
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{base}/health", timeout=2).json()["data"]
            if health["status"] == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{base} did not become ready: {health}")


async def run_cell(base: str, route: str, clients: int, seconds: float, jpegs: list[bytes]) -> Cell:
    """`clients` closed-loop clients for `seconds` (after one warm-up request each)."""
    cell = Cell()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def one(i: int) -> int:
            if route == "match":
                files = [("image", ("a.jpg", jpegs[i % len(jpegs)], "image/jpeg"))]
                response = await client.post("/api/v1/clip/match", files=files, data={"tags": TAGS})
                count = 1
            else:
                files = [
                    ("images", (f"{k}.jpg", jpegs[(i + k) % len(jpegs)], "image/jpeg"))
                    for k in range(EMBED_IMAGES)
                ]
                response = await client.post("/api/v1/clip/embed/image", files=files)
                count = EMBED_IMAGES
            if response.status_code != 200:
                cell.errors += 1
                return 0
            return count

        await asyncio.gather(*(one(i) for i in range(clients)))  # warm: connections, caches
        start = time.perf_counter()
        deadline = start + seconds
        last_done = start

        async def loop(c: int) -> None:
            nonlocal last_done
            i = c
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                count = await one(i)
                done = time.perf_counter()
                if count:
                    cell.images += count
                    cell.latencies_ms.append((done - t0) * 1000)
                last_done = max(last_done, done)
                i += clients

        await asyncio.gather(*(loop(c) for c in range(clients)))
        cell.seconds = last_done - start
    return cell


def raw_model(device: str, threads: int) -> list[tuple[str, int, float]]:
    """Images per second of the bare image tower (no server), fp32 and, on CUDA, fp16."""
    import open_clip
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    model = open_clip.create_model(MODEL, pretrained=None, device=device).eval()
    rows = []
    precisions = ["fp32", "fp16"] if device == "cuda" else ["fp32"]
    sizes = [1, 32, 256] if device == "cuda" else [1, 8, 32]
    for precision in precisions:
        for batch in sizes:
            x = torch.randn(batch, 3, 224, 224, device=device)
            autocast = torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16")
            with torch.inference_mode(), autocast:
                model.encode_image(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                runs, start = 0, time.perf_counter()
                while time.perf_counter() - start < (2.0 if device == "cuda" else 4.0) or runs < 2:
                    model.encode_image(x)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    runs += 1
                elapsed = time.perf_counter() - start
            rows.append((precision, batch, runs * batch / elapsed))
    return rows


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="CLIP serving throughput, latency and memory.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="TORCH_THREADS (default: 2 on CPU)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--routes", default="match,embed")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    threads = args.threads or (4 if gpu else 2)
    seconds = args.seconds or (5.0 if gpu else 12.0)
    levels = [int(c) for c in args.clients.split(",")]
    routes = args.routes.split(",")
    jpegs = [photo_jpeg(seed) for seed in range(64)]
    cache = Path(tempfile.mkdtemp(prefix="clip-bench-"))

    servers = {mode: start_server(mode, args.device, threads, cache) for mode in MODES}
    try:
        for _, base in servers.values():
            wait_ready(base)
        cells: dict[tuple[str, int, str], list[Cell]] = {}
        for route in routes:
            for clients in levels:
                for _ in range(args.rounds):
                    for mode, (_, base) in servers.items():
                        cell = asyncio.run(run_cell(base, route, clients, seconds, jpegs))
                        cells.setdefault((route, clients, mode), []).append(cell)
                        print(
                            f"  {route:5} {clients:3} clients {mode:8}: {cell.rate:7.1f} img/s, "
                            f"p50 {cell.pct(50):7.1f} ms, errors {cell.errors}",
                            file=sys.stderr,
                        )
        peaks = {mode: vm_hwm_mb(server.pid) for mode, (server, _) in servers.items()}
        health = httpx.get(f"{servers['default'][1]}/health").json()["data"]["models"]["clip"]
    finally:
        for server, _ in servers.values():
            server.terminate()
        for server, _ in servers.values():
            server.wait(timeout=60)

    print(
        f"\nCLIP {MODEL} (random init, {args.device}, TORCH_THREADS={threads}), "
        f"{args.rounds} alternating rounds of {seconds:.0f} s per cell; "
        f"match: 1 JPEG + 5 tags, embed: {EMBED_IMAGES} JPEGs (640x480) per request\n"
    )
    print(
        "| route | clients | baseline img/s | default img/s | ratio | baseline p50 / p99 ms "
        "| default p50 / p99 ms | p50 ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for route in routes:
        for clients in levels:
            merged = {}
            for mode in MODES:
                runs = cells[(route, clients, mode)]
                merged[mode] = Cell(
                    images=sum(c.images for c in runs),
                    seconds=sum(c.seconds for c in runs),
                    latencies_ms=[ms for c in runs for ms in c.latencies_ms],
                    errors=sum(c.errors for c in runs),
                )
            b, d = merged["baseline"], merged["default"]
            path = "/clip/match" if route == "match" else "/clip/embed/image"
            errors = f" ({b.errors}/{d.errors} errors)" if b.errors or d.errors else ""
            print(
                f"| `{path}` | {clients} | {b.rate:.1f} | {d.rate:.1f} | {d.rate / b.rate:.2f}x "
                f"| {b.pct(50):.0f} / {b.pct(99):.0f} | {d.pct(50):.0f} / {d.pct(99):.0f} "
                f"| {d.pct(50) / b.pct(50):.2f}{errors} |"
            )
    batching = health["batching"]
    print(
        f"\ndefault server's batcher: {batching['batches']} image batches, mean size "
        f"{batching['mean_batch_size']}, max {batching['max_batch']}, wait {batching['wait_ms']} ms; "
        f"runtime {health['runtime']}"
    )
    print("\n| raw image tower (no server) | batch | img/s |\n|---|---|---|")
    for precision, batch, rate in raw_model(args.device, threads):
        print(f"| {precision} | {batch} | {rate:.1f} |")
    print("\n| server | peak RSS MB |\n|---|---|")
    for mode, peak in peaks.items():
        print(f"| {mode} (ViT-B-32 + career model, after the runs) | {peak:.0f} |")


if __name__ == "__main__":
    main()
