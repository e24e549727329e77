"""What hostile input costs a real server, one row per class, next to its budget.

    python -m benchmarks.hostile [--quick]

Starts `python -m app` with ViT-B-32 geometry (random weights: the real input size and
model cost), sends each crafted file of `benchmarks.hostile_files` and each hostile body,
and prints for each: bytes sent, status, seconds, the server's peak RSS growth and the
decode workers' (the server's descendants), and the budget the row is judged against.
`--quick` skips the two slowest rows (slow clients: 75 s; four 100 MB bodies).
"""

import argparse
import contextlib
import io
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.common import start_server, wait_ready
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

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "career_models"
ADMIN = "bench-admin"
MB = 1024 * 1024


@dataclass
class Row:
    name: str
    sent: int
    status: str
    seconds: float
    server_mb: float
    worker_mb: float
    budget: str


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


class Meter:
    """Peak RSS growth of the server and of its busiest descendant over one row."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> "Meter":
        self.pids = [self.pid, *_descendants(self.pid)]
        for pid in self.pids:
            with contextlib.suppress(OSError):  # reset VmHWM to VmRSS
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.before = {pid: _status_kb(pid, "VmRSS") for pid in self.pids}
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.server_mb = (_status_kb(self.pid, "VmHWM") - self.before[self.pid]) / 1024
        workers = [pid for pid in _descendants(self.pid)]
        self.worker_mb = max(
            [(_status_kb(pid, "VmHWM") - self.before.get(pid, 0)) / 1024 for pid in workers]
            or [0.0]
        )


def _files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("images", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)
    ]


def image_row(client: httpx.Client, pid: int, name: str, images: list[bytes], budget: str) -> Row:
    with Meter(pid) as meter:
        response = client.post("/api/v1/clip/embed/image", files=_files(images))
    code = response.json().get("error") or {}
    status = f"{response.status_code} {code.get('code', '')}".strip()
    return Row(
        name, sum(map(len, images)), status, meter.seconds, meter.server_mb, meter.worker_mb, budget
    )


def during(work: Callable[[], object], probe: Callable[[], float]) -> tuple[object, list[float]]:
    """Run `work` in a thread and `probe` in a loop until it ends: its result, the probes."""
    result: list[object] = [None]
    thread = threading.Thread(target=lambda: result.__setitem__(0, work()))
    thread.start()
    samples = []
    while thread.is_alive():
        samples.append(probe())
        time.sleep(0.02)
    thread.join()
    return result[0], samples


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    client.get(path)
    return time.perf_counter() - started


def marker_floods_row(client: httpx.Client, base: str, pid: int) -> Row:
    floods = [marker_flood_jpeg(10 * MB - 64)] * 8
    with httpx.Client(base_url=base, timeout=10) as probe, Meter(pid) as meter:
        response, samples = during(
            lambda: client.post("/api/v1/clip/embed/image", files=_files(floods)),
            lambda: timed_get(probe, "/health/live"),
        )
    median_ms = statistics.median(samples) * 1000 if samples else 0.0
    return Row(
        f"8 x 10 MB marker floods, one request (/health/live median {median_ms:.0f} ms)",
        sum(map(len, floods)),
        str(response.status_code),  # type: ignore[attr-defined]
        meter.seconds,
        meter.server_mb,
        meter.worker_mb,
        "< 600 MB; live median < 100 ms",
    )


def normal_during_bombs_row(client: httpx.Client, base: str, pid: int) -> Row:
    bomb = rgba_bomb_png()
    normal = png(photo((640, 480)))
    threads = [
        threading.Thread(
            target=lambda: httpx.post(
                f"{base}/api/v1/clip/embed/image", files=_files([bomb]), timeout=60
            )
        )
        for _ in range(2)
    ]
    with Meter(pid) as meter:
        for thread in threads:
            thread.start()
        time.sleep(0.2)  # both bombs are decoding
        started = time.perf_counter()
        response = client.post(
            "/api/v1/clip/match",
            files={"image": ("n.png", normal, "image/png")},
            data={"tags": "a cat,a dog"},
        )
        seconds = time.perf_counter() - started
        for thread in threads:
            thread.join()
    return Row(
        "normal /clip/match during two 40 MP decode bombs",
        len(normal),
        str(response.status_code),
        seconds,
        meter.server_mb,
        meter.worker_mb,
        "answered < 5 s",
    )


def base64_bodies_row(base: str, pid: int) -> Row:
    """Four concurrent bodies of 8 images of ~10 MB (random bytes), about 107 MB each."""
    import os

    images = [b"\x89PNG\r\n\x1a\n" + os.urandom(10 * MB - 4096) for _ in range(8)]
    body = base64_body(images)
    statuses: list[int] = []

    def send() -> None:
        response = httpx.post(
            f"{base}/api/v1/clip/json/embed/image",
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        )
        statuses.append(response.status_code)

    with Meter(pid) as meter:
        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    time.sleep(2)
    retained = (_status_kb(pid, "VmRSS") - meter.before[pid]) / 1024
    return Row(
        f"4 concurrent base64 bodies (retained after: {retained:.0f} MB)",
        4 * len(body),
        ",".join(map(str, sorted(statuses))),
        meter.seconds,
        meter.server_mb,
        meter.worker_mb,
        "peak < 800 MB, retained < 200 MB",
    )


def retrain_rows(client: httpx.Client, pid: int) -> list[Row]:
    """Hostile labels and unreadable CSVs to the admin's retrain route."""
    header = "math,physics,label\n"
    cases = {
        "formula label": header
        + "".join(f'{50 + i % 40},{60},=HYPERLINK("x")\n' for i in range(50)),
        "HTML label": header
        + "".join(f"{50 + i % 40},60,<img src=x onerror=alert(1)>\n" for i in range(50)),
        "e-mail label column": header
        + "".join(f"{50 + i % 40},60,s{i}@example.com\n" for i in range(50)),
        "CR-only CSV": header.replace("\n", "\r")
        + "".join(f"{50 + i % 40},60,Doctor\r" for i in range(50)),
    }
    rows = []
    for name, text in cases.items():
        data = text.encode()
        with Meter(pid) as meter:
            response = client.post(
                "/api/v1/career/retrain",
                files={"file": ("t.csv", io.BytesIO(data), "text/csv")},
                headers={"X-API-Key": ADMIN},
            )
        code = (response.json().get("error") or {}).get("code", "")
        rows.append(
            Row(
                f"retrain: {name}",
                len(data),
                f"{response.status_code} {code}",
                meter.seconds,
                meter.server_mb,
                meter.worker_mb,
                "4xx, nothing served or kept",
            )
        )
    return rows


def slow_clients_row(base: str, pid: int, clients: int = 20, limit_s: float = 75) -> Row:
    """`clients` connections sending a body at one byte a second: how many are cut off."""
    host, port = base.removeprefix("http://").split(":")
    cut: list[float] = []
    started = time.perf_counter()

    def trickle() -> None:
        with socket.create_connection((host, int(port)), timeout=limit_s + 5) as sock:
            sock.sendall(
                b"POST /api/v1/career/predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            sock.settimeout(1)
            while time.perf_counter() - started < limit_s:
                try:
                    sock.sendall(b" ")
                    if sock.recv(1024) == b"":
                        break
                    break  # an answer: the server gave up on the body
                except TimeoutError:
                    continue
                except OSError:
                    break
            else:
                return
            cut.append(time.perf_counter() - started)

    with Meter(pid) as meter:
        threads = [threading.Thread(target=trickle) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return Row(
        f"{clients} clients sending 1 byte/s ({len(cut)} cut off, last at "
        f"{max(cut, default=0):.0f} s)",
        clients * 1000,
        f"{len(cut)}/{clients} cut",
        meter.seconds,
        meter.server_mb,
        meter.worker_mb,
        ">= 18 cut within 75 s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the two slowest rows")
    args = parser.parse_args()
    models = Path(tempfile.mkdtemp(prefix="hostile-models-"))
    shutil.copytree(FIXTURE_MODELS, models, dirs_exist_ok=True)
    server, base = start_server(
        {
            "CAREER_MODEL_DIR": str(models),
            "UPLOAD_DIR": str(models / "uploads"),
            "CLIP_MODEL_CACHE_DIR": str(models / "clip"),
            "CLIP_MODEL_NAME": "ViT-B-32",
            "CLIP_PRETRAINED": "",
            "CLIP_BACKEND": "torch",
            "CLIP_PRECISION": "fp32",
            "CLIP_CACHE_MB": "0",
            "ADMIN_API_KEYS": ADMIN,
            "LOG_FORMAT": "json",
        }
    )
    rows: list[Row] = []
    try:
        wait_ready(base, timeout=300)
        with httpx.Client(base_url=base, timeout=120) as client:
            image_row(client, server.pid, "warm-up", [png(photo((640, 480)))], "")
            single = "200/4xx < 3 s, < 300 MB"
            for name, data in [
                ("2 x 100,000 PNG", extreme_png(2, 100_000)),
                ("100,000 x 2 PNG", extreme_png(100_000, 2)),
                ("10 x 50,000 PNG", extreme_png(10, 50_000)),
                ("400 x 100,000 PNG (40 MP strip)", extreme_png(400, 100_000)),
                ("6,324 x 6,324 PNG (40 MP square)", extreme_png(6324, 6324)),
                ("progressive JPEG, 3,000 scans", scan_flood_jpeg(3000)),
                ("progressive JPEG, 60 scans of 12 MP", scan_flood_jpeg(50)),
                ("JPEG, 10 MB of empty markers", marker_flood_jpeg(10 * MB - 64)),
                ("PNG, 800,000 empty chunks", chunk_flood_png(800_000)),
                ("GIF, 1,000,000 sub-blocks", block_flood_gif(1_000_000)),
                ("40 MP RGBA PNG", rgba_bomb_png()),
            ]:
                rows.append(image_row(client, server.pid, name, [data], single))
            rows.append(marker_floods_row(client, base, server.pid))
            rows.append(normal_during_bombs_row(client, base, server.pid))
            rows += retrain_rows(client, server.pid)
            if not args.quick:
                rows.append(base64_bodies_row(base, server.pid))
                rows.append(slow_clients_row(base, server.pid))
            alive = client.get("/health/live").status_code
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(models, ignore_errors=True)
    print(f"\nViT-B-32 geometry, one server; server alive at the end: {alive == 200}\n")
    print("| input | bytes | status | s | server peak RSS +MB | worker peak +MB | budget |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.name} | {r.sent:,} | {r.status} | {r.seconds:.2f} | {r.server_mb:.0f} "
            f"| {r.worker_mb:.0f} | {r.budget} |"
        )


if __name__ == "__main__":
    main()
