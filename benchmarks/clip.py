"""CLIP runtimes and serving, on a ViT-B-32 with seeded random weights (the real model's
compute, no download) and on the tiny fixture model (real zero-shot answers).

    .venv/bin/python -m benchmarks.clip [--seconds 12] [--rounds 2] [--clients 1,8,32]
    .venv/bin/python -m benchmarks.clip --parts runtimes      # the candidate table only
    .venv/bin/python -m benchmarks.clip --device cuda         # on a GPU host, in under 5 minutes

1. Runtimes: every candidate this machine offers (torch fp32/bf16, ONNX Runtime fp32/int8;
   on CUDA torch fp32/fp16), built and timed in-process through the service's own
   selection code: ms per image at batch 1 and 8 on ViT-B-32, min cosine to torch fp32 on
   the probe set, whether it passes the gate at the default threshold, and zero-shot top-1
   of the fixture model on 240 shapes it was never trained on.
2. HTTP: two servers side by side, *baseline* (CLIP_BACKEND=torch CLIP_PRECISION=fp32
   CLIP_MAX_BATCH=1 CLIP_PREPROCESS_WORKERS=1: one image at a time in fp32, as before the
   engine) and *auto* (the defaults: the runtime chosen by measurement, dynamic batching,
   a preprocessing pool). Each cell (route, clients) is measured on both in alternating
   rounds, so drift in the machine's speed hits both alike. Clients are closed-loop.
   `/clip/match` sends one 640x480 JPEG and 5 tags; `/clip/embed/image` 8 JPEGs. The image
   cache is off and admission wide open: the table measures the engine and the runtime.
3. Memory: RSS of a server with CLIP_BACKEND=onnx CLIP_PRECISION=int8 (from the cached
   export: no torch), idle after one request, next to the two servers above.

Targets (2-vCPU dev VM): /clip/match at 8 clients, auto >= 4x baseline img/s; idle RSS of
the int8 server < 800 MB. On one H100: /clip/embed/image at 32 clients >= 2,000 img/s.
The ViT-B-32 weights (600 MB) and the exports are kept in benchmarks/.cache between runs.
"""

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import free_port, photo_jpeg

MODEL = "ViT-B-32"
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
CAREER_MODELS = ROOT / "tests" / "fixtures" / "career_models"
FIXTURE = ROOT / "tests" / "fixtures" / "clip"
TAGS = ["a photo of a dog", "a city at night", "a bowl of fruit", "a red circle", "a beach"]
EMBED_IMAGES = 8
MODES = {
    "baseline": {
        "CLIP_BACKEND": "torch",
        "CLIP_PRECISION": "fp32",
        "CLIP_MAX_BATCH": "1",
        "CLIP_PREPROCESS_WORKERS": "1",
    },
    "auto": {},
}
INT8 = {"CLIP_BACKEND": "onnx", "CLIP_PRECISION": "int8"}


def vit_weights() -> Path:
    """ViT-B-32 with seeded random weights, saved once: a checkpoint file has a sha256, so
    its exports are cached like real weights' (random init is never exported)."""
    path = CACHE / f"{MODEL}-random-seed0.pt"
    if not path.is_file():
        import open_clip
        import torch

        CACHE.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(MODEL, pretrained=None)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.rename(path)
    return path


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
    settings: dict[str, str], device: str, threads: int, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_HOST": "127.0.0.1",
        "FASTAPI_PORT": str(port),
        "CLIP_MODEL_NAME": MODEL,
        "CLIP_PRETRAINED": str(vit_weights()),
        "CLIP_MODEL_CACHE_DIR": str(CACHE / "clip"),
        "CAREER_MODEL_DIR": str(CAREER_MODELS),
        "CLIP_DEVICE": device,
        "TORCH_THREADS": str(threads),
        "CLIP_CACHE_MB": "0",
        "CLIP_MAX_WAITING": "100000",
        "LOG_FORMAT": "json",
        "DEBUG": "false",
        "WORKERS": str(workers),
        **settings,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return server, f"http://127.0.0.1:{port}"


def wait_ready(base: str, workers: int = 1, timeout: float = 600) -> None:
    """Until CLIP is loaded in every worker (as far as 8 answers per worker in a row can
    tell: each /health lands on whichever worker accepts it)."""
    deadline = time.monotonic() + timeout
    clip = None
    streak = 0
    while time.monotonic() < deadline:
        try:
            clip = httpx.get(f"{base}/health", timeout=2).json()["data"]["models"]["clip"]
        except httpx.HTTPError:
            streak = 0
            time.sleep(0.5)
            continue
        if clip["state"] in ("unavailable", "disabled"):
            raise SystemExit(f"CLIP is {clip['state']} on {base}: {clip['error']}")
        streak = streak + 1 if clip["state"] == "loaded" else 0
        if streak >= 8 * workers:
            return
        time.sleep(0.05 if streak else 0.5)
    raise SystemExit(f"{base} did not become ready: {clip}")


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


def run_cell_in_processes(
    base: str, route: str, clients: int, seconds: float, jpegs: list[bytes], procs: int
) -> Cell:
    """The clients split over `procs` processes (one Python client process tops out at a
    few hundred requests a second), merged into one cell."""
    if procs <= 1:
        return asyncio.run(run_cell(base, route, clients, seconds, jpegs))
    from concurrent.futures import ProcessPoolExecutor

    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        futures = [
            pool.submit(_cell_sync, base, route, share, seconds, jpegs) for share in shares if share
        ]
        cells = [future.result() for future in futures]
    return Cell(
        images=sum(c.images for c in cells),
        seconds=max(c.seconds for c in cells),
        latencies_ms=[ms for c in cells for ms in c.latencies_ms],
        errors=sum(c.errors for c in cells),
    )


def _cell_sync(base: str, route: str, clients: int, seconds: float, jpegs: list[bytes]) -> Cell:
    return asyncio.run(run_cell(base, route, clients, seconds, jpegs))


def runtime_table(device: str, threads: int) -> list[dict[str, Any]]:
    """Every candidate on this machine, forced one at a time through the service's own
    selection code (CLIP_MIN_COSINE=1e-6, so each is built and timed whatever its parity;
    the table says whether it passes at the default threshold)."""
    from app.config import Settings
    from app.services.clip import candidates, parity, selection, timing
    from app.services.clip.preprocess import ImageSpec, to_array
    from app.services.clip.service import _configure_torch
    from research.clip_fixture.shapes import all_captions, all_pairs, render
    from tests.conftest import TINY_CLIP

    _configure_torch(threads)
    flags = candidates.cpu_flags()
    pool = candidates.CUDA_CANDIDATES if device == "cuda" else candidates.CPU_CANDIDATES
    rows = []
    for backend, precision in pool:
        row: dict[str, Any] = {"name": f"{backend}-{precision}"}
        rows.append(row)
        if precision == "bf16" and not flags & {"avx512_bf16", "amx_bf16"}:
            row["note"] = "not on this CPU (no AVX512-BF16/AMX: emulated, several x slower)"
            continue
        forced: dict[str, Any] = {
            "clip_backend": backend,
            "clip_precision": precision,
            "clip_min_cosine": 1e-6,
            "clip_device": device,
            "clip_model_cache_dir": CACHE / "clip",
            "torch_threads": threads,
        }
        vit = Settings(
            _env_file=None, clip_model_name=MODEL, clip_pretrained=str(vit_weights()), **forced
        )  # type: ignore[call-arg]
        chosen = selection.select(vit, device, max_batch=8)
        trial = chosen.chosen
        timing.time_trials([trial], chosen.reference, table_batches(device))
        row.update(
            ms=trial.ms_per_image,
            min_cosine=trial.min_cosine,
            clear=trial.clear_probes,
            passes=trial.min_cosine is not None
            and trial.min_cosine >= parity.MIN_COSINE[precision]
            and bool(trial.same_best_tag),
        )
        chosen.runtime.close()
        tiny = Settings(
            _env_file=None,
            **{
                **TINY_CLIP,
                **forced,
                "clip_device": device,
                "clip_model_cache_dir": CACHE / "clip",
            },
        )  # type: ignore[call-arg]
        small = selection.select(tiny, device, max_batch=8)
        rng = np.random.default_rng(2024)
        spec = ImageSpec.from_open_clip(small.meta.preprocess)
        assert spec is not None
        labels, images = [], []
        for i, (color, shape) in enumerate(all_pairs()):
            for _ in range(10):
                image = render(color, shape, size=int(rng.integers(40, 200)), rng=rng)
                images.append(to_array(image, spec))
                labels.append(i)
        vectors = small.runtime.encode_images([np.stack(images)])
        texts = small.runtime.encode_texts([small.tokenize(all_captions())])
        row["zero_shot"] = float(np.mean(np.argmax(vectors @ texts.T, axis=1) == labels))
        row["tiny_cosine"] = small.chosen.min_cosine
        small.runtime.close()
        print(f"  {row}", file=sys.stderr)
    return rows


def table_batches(device: str) -> list[int]:
    return [1, 8, 256] if device == "cuda" else [1, 8]


def print_runtime_table(rows: list[dict[str, Any]], device: str, threads: int) -> None:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from app.services.clip.candidates import cpu_flags

    isa = [
        f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in cpu_flags()
    ]
    print(f"\nCLIP runtimes on {cpu} ({', '.join(isa) or 'no AVX2'}), {device}, {threads} threads")
    sizes = table_batches(device)
    print(
        "\n| candidate | ViT-B-32 ms/img "
        + " | ".join(f"b{b}" for b in sizes)
        + " | min cosine (ViT-B-32 random / fixture) | gate at default | fixture zero-shot top-1 |"
        + "\n|---|"
        + "---|" * (len(sizes) + 3)
    )
    for row in rows:
        if "note" in row:
            print(f"| {row['name']} | " + "- | " * (len(sizes) + 2) + f"{row['note']} |")
            continue
        ms = row["ms"]
        timing = " | ".join(f"{ms[str(b)]:.2f}" for b in sizes)
        print(
            f"| {row['name']} | {timing} | {row['min_cosine']:.5f} / "
            f"{row['tiny_cosine']:.5f} | {'pass' if row['passes'] else 'fail'} "
            f"| {row['zero_shot']:.3f} |"
        )


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_table(args: argparse.Namespace, threads: int) -> dict[str, float]:
    """Each mode's server side by side, cells alternating; returns their RSS afterwards."""
    levels = [int(c) for c in args.clients.split(",")]
    routes = args.routes.split(",")
    modes = args.modes.split(",")
    seconds = args.seconds or (5.0 if args.device == "cuda" else 12.0)
    jpegs = [photo_jpeg(seed) for seed in range(64)]
    servers = {}
    try:
        for mode in modes:  # one at a time: auto times its candidates while it loads
            workers = args.workers if mode == "auto" else 1
            servers[mode] = start_server(MODES[mode], args.device, threads, workers)
            wait_ready(servers[mode][1], workers)
        cells: dict[tuple[str, int, str], list[Cell]] = {}
        for route in routes:
            for clients in levels:
                for _ in range(args.rounds):
                    for mode, (_, base) in servers.items():
                        cell = run_cell_in_processes(
                            base, route, clients, seconds, jpegs, args.client_procs
                        )
                        cells.setdefault((route, clients, mode), []).append(cell)
                        print(
                            f"  {route:5} {clients:3} clients {mode:8}: {cell.rate:7.1f} img/s, "
                            f"p50 {cell.pct(50):7.1f} ms, errors {cell.errors}",
                            file=sys.stderr,
                        )
        rss = {mode: rss_mb(server.pid) for mode, (server, _) in servers.items()}
        last = servers[modes[-1]][1]
        health = httpx.get(f"{last}/health").json()["data"]["models"]["clip"]
    finally:
        for server, _ in servers.values():
            server.terminate()
        for server, _ in servers.values():
            server.wait(timeout=60)

    runtime = health["runtime"]
    print(
        f"\nHTTP, CLIP {MODEL} ({args.device}, TORCH_THREADS={threads}, auto WORKERS="
        f"{args.workers}, {args.client_procs} client process(es)), {args.rounds} alternating "
        f"rounds of {seconds:.0f} s per cell; {modes[-1]} served {runtime['backend']} "
        f"{runtime['precision']}; match: 1 JPEG + 5 tags, embed: {EMBED_IMAGES} JPEGs "
        "(640x480) per request\n"
    )
    print(
        "| route | clients | " + " | ".join(f"{m} img/s | {m} p50 / p99 ms" for m in modes), end=""
    )
    both = modes == ["baseline", "auto"]
    print(" | ratio | p50 ratio |" if both else " |")
    print("|---|---|" + "---|---|" * len(modes) + ("---|---|" if both else ""))
    for route in routes:
        for clients in levels:
            merged = {}
            for mode in modes:
                runs = cells[(route, clients, mode)]
                merged[mode] = Cell(
                    images=sum(c.images for c in runs),
                    seconds=sum(c.seconds for c in runs),
                    latencies_ms=[ms for c in runs for ms in c.latencies_ms],
                    errors=sum(c.errors for c in runs),
                )
            path = "/clip/match" if route == "match" else "/clip/embed/image"
            row = f"| `{path}` | {clients} | " + " | ".join(
                f"{c.rate:.1f}{f' ({c.errors} errors)' if c.errors else ''} "
                f"| {c.pct(50):.0f} / {c.pct(99):.0f}"
                for c in merged.values()
            )
            if both:
                b, d = merged["baseline"], merged["auto"]
                row += f" | {d.rate / b.rate:.2f}x | {d.pct(50) / b.pct(50):.2f}"
            print(row + " |")
    batching = health["batching"]
    print(
        f"\n{modes[-1]} server's batcher: {batching['batches']} image batches, mean size "
        f"{batching['mean_batch_size']}, max {batching['max_batch']}; candidates: "
        + "; ".join(
            "-".join(filter(None, (c["backend"], c["precision"], c["recipe"])))
            + (f" {c['ms_per_image']}" if c["passed"] else f" ({c['error']})")
            for c in runtime["candidates"]
        )
    )
    return rss


def int8_idle_rss(device: str, threads: int) -> tuple[float, str]:
    """RSS of a server serving the cached int8 export, idle after one answered request."""
    server, base = start_server(INT8, device, threads)
    try:
        wait_ready(base)
        with httpx.Client(base_url=base, timeout=120) as client:
            files = {"image": ("a.jpg", photo_jpeg(1), "image/jpeg")}
            response = client.post("/api/v1/clip/match", files=files, data={"tags": TAGS})
            assert response.status_code == 200, response.text
            runtime = client.get("/health").json()["data"]["models"]["clip"]["runtime"]
        time.sleep(2)
        torch = "torch" in Path(f"/proc/{server.pid}/maps").read_text()
        return rss_mb(
            server.pid
        ), f"{runtime['backend']} {runtime['precision']}, torch mapped: {torch}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description="CLIP runtimes, serving throughput and memory.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="TORCH_THREADS (default: 2 on CPU)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--routes", default="match,embed")
    parser.add_argument("--parts", default="runtimes,http,memory")
    parser.add_argument("--modes", default="baseline,auto", help="servers in the HTTP table")
    parser.add_argument("--workers", type=int, default=1, help="WORKERS of the auto server")
    parser.add_argument("--client-procs", type=int, default=1, help="client processes")
    args = parser.parse_args()
    # The runtimes part imports the app, whose logging setup would print a line for each of
    # this client's thousands of requests between the tables.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    threads = args.threads or (4 if args.device == "cuda" else 2)
    parts = args.parts.split(",")
    vit_weights()
    rows = runtime_table(args.device, threads) if "runtimes" in parts else []
    rss = http_table(args, threads) if "http" in parts else {}
    if "memory" in parts and args.device == "cpu":
        rss_int8, note = int8_idle_rss(args.device, threads)
    if rows:
        print_runtime_table(rows, args.device, threads)
    if "memory" in parts and args.device == "cpu":
        print("\n| server (ViT-B-32 + career model) | RSS MB |\n|---|---|")
        for mode, mb in rss.items():
            print(f"| {mode}, after the HTTP runs | {mb:.0f} |")
        print(
            f"| CLIP_BACKEND=onnx CLIP_PRECISION=int8, idle after one request ({note}) | {rss_int8:.0f} |"
        )


if __name__ == "__main__":
    main()
