"""Soak: mixed and hostile traffic against the real server; memory, fds and temp files stay flat.

    .venv/bin/python -m benchmarks.soak [--minutes 5] [--clients 4]

One server (`python -m app`, the tiny CLIP fixture, a private copy of the fixture career
model) gets closed-loop traffic on loopback: career predict and analyze, CLIP match and
embed, and 10% hostile requests (wrong or no key, broken JSON, a body that is not UTF-8,
a text over the limit, images in formats the service refuses, corrupt images, a log-forging
path, a wrong method, a body over the limit, too many tags). Along the way: one retrain
and two activations (the new version, then back).

Reported: requests, the status histogram, p50/p99, and the server's RSS, open file
descriptors and temporary files at the start, after the warm-up and at the end.
Pass: no 5xx; RSS at the end within 10% of RSS after the warm-up (the first fifth of the
run, at least 10 s); fds and temp files back to their start values once the traffic and
the retrain are over. `tests/test_soak.py` runs it for one minute.
"""

import argparse
import asyncio
import io
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
USER, ADMIN = "soak-user-key", "soak-admin-key"
TAGS = "a red circle,a blue square,a green triangle,a yellow star"


@dataclass
class Probe:
    """The server process as the OS sees it."""

    rss_mb: float
    fds: int
    temp_files: int


@dataclass
class Report:
    seconds: float
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    probes: dict[str, Probe] = field(default_factory=dict)
    retrain: str = "not run"
    activations: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def rss_growth(self) -> float:
        warm, end = self.probes["warm"].rss_mb, self.probes["end"].rss_mb
        return (end - warm) / warm

    def failures(self) -> list[str]:
        start, end = self.probes["start"], self.probes["end"]
        problems = []
        if self.server_errors:
            problems.append(f"{self.server_errors} answers were 5xx")
        if self.rss_growth >= 0.10:
            problems.append(f"RSS grew {self.rss_growth:.1%} after the warm-up")
        if end.fds != start.fds:
            problems.append(f"open fds {start.fds} -> {end.fds}")
        if end.temp_files != start.temp_files:
            problems.append(f"temp files {start.temp_files} -> {end.temp_files}")
        if len(self.activations) != 2 or any(not a.endswith(": 200") for a in self.activations):
            problems.append(f"activations: {self.activations}")
        return problems

    def table(self) -> str:
        p50, p99 = np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else (0, 0)
        lines = [
            f"soak: {self.requests} requests in {self.seconds:.0f} s, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms; retrain {self.retrain}; activations {self.activations}",
            "statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())),
            "",
            "| moment | RSS MB | open fds | temp files |",
            "|---|---|---|---|",
        ]
        for name, probe in self.probes.items():
            lines.append(f"| {name} | {probe.rss_mb:.0f} | {probe.fds} | {probe.temp_files} |")
        verdict = self.failures()
        lines.append("")
        lines.append("PASS" if not verdict else "FAIL: " + "; ".join(verdict))
        return "\n".join(lines)


def probe(pid: int, uploads: Path, jobs: Path) -> Probe:
    """RSS, open fds, and temporary files: spooled uploads and retraining data (the job
    records and the lock beside the data are kept on purpose)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    temp = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
    if jobs.exists():
        temp += [p for p in jobs.iterdir() if p.is_file() and p.suffix == ".csv"]
    return Probe(rss / 1024, fds, len(temp))


def _image(fmt: str, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(out, format=fmt)
    return out.getvalue()


def _students_csv(rows: int, seed: int) -> bytes:
    from app.services.career.catalog import default_catalog
    from app.services.career.synthetic import generate_students

    frame = generate_students(default_catalog(), rows, seed=seed)
    return str(frame.to_csv(index=False)).encode()


class Traffic:
    """Request makers: each returns (method, path, keyword arguments for httpx)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.images = [_image("PNG", (r, 30, 200 - r)) for r in range(0, 200, 25)]
        self.jpegs = [_image("JPEG", (30, g, 90)) for g in range(0, 200, 40)]
        self.key = {"X-API-Key": USER}

    def student(self) -> dict[str, Any]:
        r = self.rng
        return {
            "academic_scores": {s: r.randint(40, 100) for s in ("math", "physics", "english")},
            "interests": {"keywords": r.sample(["coding", "design", "medicine", "research"], 2)},
        }

    def normal(self) -> tuple[str, str, dict[str, Any]]:
        pick = self.rng.random()
        if pick < 0.3:
            return "POST", "/api/v1/career/predict", {"json": self.student()}
        if pick < 0.5:
            return "POST", "/api/v1/career/analyze", {"json": self.student()}
        if pick < 0.75:
            image = self.rng.choice(self.images + self.jpegs)
            return (
                "POST",
                "/api/v1/clip/match",
                {
                    "files": {"image": ("a", image)},
                    "data": {"tags": TAGS},
                },
            )
        files = [("images", (f"{i}", self.rng.choice(self.images))) for i in range(3)]
        return "POST", "/api/v1/clip/embed/image", {"files": files}

    def hostile(self) -> tuple[str, str, dict[str, Any]]:
        kind = self.rng.randrange(10)
        if kind == 0:  # no key
            return "POST", "/api/v1/career/predict", {"json": self.student(), "no_key": True}
        if kind == 1:  # admin route with a user key
            return "POST", "/api/v1/career/retrain", {"json": {"records": [{"a": 1}]}}
        if kind == 2:
            return (
                "POST",
                "/api/v1/career/predict",
                {
                    "content": b'{"academic_scores": {',
                    "headers": {"content-type": "application/json"},
                },
            )
        if kind == 3:  # not UTF-8
            return (
                "POST",
                "/api/v1/clip/embed/text",
                {
                    "content": b'{"texts": ["\xff\xfe"]}',
                    "headers": {"content-type": "application/json"},
                },
            )
        if kind == 4:
            return "POST", "/api/v1/clip/embed/text", {"json": {"texts": ["a" * 5000]}}
        if kind == 5:  # a format Pillow decodes but the service refuses
            fmt = self.rng.choice(["TGA", "PCX", "ICO", "SGI"])
            return "POST", "/api/v1/clip/embed/image", {"files": {"images": ("x", _image(fmt))}}
        if kind == 6:  # truncated PNG
            return (
                "POST",
                "/api/v1/clip/match",
                {
                    "files": {"image": ("x", self.images[0][:60])},
                    "data": {"tags": TAGS},
                },
            )
        if kind == 7:
            return "GET", "/x%0A2026-01-01 INFO app.request POST /activate 200", {}
        if kind == 8:  # over the JSON body limit
            return "POST", "/api/v1/career/predict", {"content": b"{" + b" " * 70_000 + b"}"}
        tags = ",".join(f"tag {i}" for i in range(5000))
        return (
            "POST",
            "/api/v1/clip/match",
            {
                "files": {"image": ("a", self.images[1])},
                "data": {"tags": tags},
            },
        )


async def _traffic(base: str, report: Report, seconds: float, clients: int, seed: int) -> None:
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def loop(n: int) -> None:
            traffic = Traffic(random.Random(seed + n))
            while time.monotonic() < deadline:
                hostile = traffic.rng.random() < 0.1
                method, path, kwargs = traffic.hostile() if hostile else traffic.normal()
                headers = {} if kwargs.pop("no_key", False) else dict(traffic.key)
                headers.update(kwargs.pop("headers", {}))
                started = time.perf_counter()
                try:
                    response = await client.request(method, path, headers=headers, **kwargs)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0  # the connection was closed on us (a refused upload)
                report.latencies_ms.append((time.perf_counter() - started) * 1000)
                report.requests += 1
                report.statuses[status] += 1

        await asyncio.gather(*(loop(n) for n in range(clients)))


def _admin_story(base: str, report: Report, csv: bytes, start_after: float) -> None:
    """One retrain, then activate the new version and go back to the old one."""
    headers = {"X-API-Key": ADMIN}
    time.sleep(start_after)
    with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
        before = client.get("/api/v1/career/model").json()["data"]["version"]
        response = client.post(  # forced: a version to activate, whatever the gate says
            "/api/v1/career/retrain",
            files={"file": ("data.csv", csv, "text/csv")},
            data={"force": "true"},
        )
        if response.status_code != 202:
            report.retrain = f"refused: {response.status_code} {response.text[:200]}"
            return
        job_id = response.json()["data"]["id"]
        deadline = time.monotonic() + 300
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/career/retrain/{job_id}").json()["data"]
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        report.retrain = f"{job.get('state')} ({job.get('candidate_version')})"
        new = job.get("candidate_version") or before
        for version in (before, new):  # back to the old version, then the new one again
            answer = client.post(f"/api/v1/career/models/{version}/activate")
            report.activations.append(f"{version}: {answer.status_code}")


def run(minutes: float, clients: int = 4, seed: int = 7, workdir: Path | None = None) -> Report:
    """Start a server, soak it, stop it; the report says whether it held."""
    seconds = minutes * 60
    work = Path(workdir or tempfile.mkdtemp(prefix="soak-"))
    models = work / "career_models"
    shutil.copytree(FIXTURES / "career_models", models, dirs_exist_ok=True)
    uploads = work / "uploads"
    server, base = start_server(
        {
            "CAREER_MODEL_DIR": str(models),
            "UPLOAD_DIR": str(uploads),
            "CLIP_MODEL_CACHE_DIR": str(work / "clip-cache"),
            "CLIP_ENABLED": "true",
            "CLIP_MODEL_NAME": "tiny-clip",
            "CLIP_PRETRAINED": str(FIXTURES / "clip" / "tiny-clip.pt"),
            "CLIP_MODEL_CONFIG": str(FIXTURES / "clip" / "tiny-clip.json"),
            "API_KEYS": USER,
            "ADMIN_API_KEYS": ADMIN,
            "MODEL_POLL_SECONDS": "0.5",
            "LOG_FORMAT": "json",
        }
    )
    report = Report(seconds=seconds)
    watched = (uploads, models / ".jobs")
    try:
        wait_ready(base)
        time.sleep(1)  # the readiness poll's connections closed
        report.probes["start"] = probe(server.pid, *watched)
        csv = _students_csv(600, seed)
        warm = max(10.0, seconds / 5)
        asyncio.run(_traffic(base, report, warm, clients, seed))
        report.probes["warm"] = probe(server.pid, *watched)
        story = threading.Thread(
            target=_admin_story, args=(base, report, csv, min(5.0, seconds / 10))
        )
        story.start()
        asyncio.run(_traffic(base, report, seconds - warm, clients, seed + 100))
        story.join(timeout=300)
        time.sleep(2)  # closed connections and the retrain child are gone
        report.probes["end"] = probe(server.pid, *watched)
    finally:
        server.terminate()
        server.wait(timeout=60)
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="Mixed and hostile traffic; resources flat.")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    report = run(args.minutes, args.clients)
    print(report.table())
    sys.exit(1 if report.failures() else 0)


if __name__ == "__main__":
    main()
