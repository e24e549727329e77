"""Career benchmark: service-layer latency and HTTP throughput against a trivial route.

    .venv/bin/python -m benchmarks.career [--model-dir DIR] [--workers 1] [--rounds 10]
                                          [--seconds 2] [--concurrency 16]
                                          [--parts service,training,http,candidates]

Prints a table per part. `candidates` trains one model per default candidate on the public
`student-scores.csv` (or synthetic students without it) and gives predict p50/p99 for each,
compiled and through sklearn, analyze (all careers) p50, and the HTTP predict ratio with
the gradient-boosting model active. Targets: service-layer predict p50 < 0.5 ms for every
candidate; HTTP predict throughput at least 0.45x the trivial endpoint's (`/health/live`)
on the same server with a tree model active; analyze (all careers) p50 <= 5 ms. The load client
runs on the same machine and shares its cores, as it would on a 2-core box; compare the
two HTTP rows with each other, not with other machines. The routes alternate in rounds and
the ratio is given per round (median and range), because this VM's speed drifts: a single
round's ratio moves by 0.1 either way, so the median needs many short rounds (with 5 rounds
of 3 s, three runs in a row gave medians 0.44, 0.47 and 0.53).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import pandas as pd

from app.config import get_settings
from app.schemas.career import AnalyzeRequest, PredictRequest
from app.services.career.bundle import VersionRegistry
from app.services.career.catalog import default_catalog
from app.services.career.preparation import prepare_frame
from app.services.career.recommender import CareerRecommender
from app.services.career.synthetic import generate_students
from app.services.career.training import (
    DEFAULT_CANDIDATES,
    TrainingConfig,
    train_model,
)
from benchmarks.common import PUBLIC_CSV, PUBLIC_MAPPING, free_port, timed_ms, wait_ready

STUDENT = {
    # Subjects both the synthetic model and one trained on the public CSV know.
    "academic_scores": {"math": 88, "physics": 79, "chemistry": 74, "english": 71},
    "interests": {"keywords": ["coding", "robotics"]},
    "habits": {"weekly_self_study_hours": 18, "absence_days": 3, "part_time_job": False},
    "top_k": 5,
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def service_latency(model_dir: Path, runs: int) -> list[tuple[str, float, float, int]]:
    recommender = CareerRecommender(VersionRegistry(model_dir))
    recommender.load()
    predict = PredictRequest.model_validate(STUDENT)
    analyze_body = {k: v for k, v in STUDENT.items() if k != "top_k"}
    analyze_one = AnalyzeRequest.model_validate({**analyze_body, "careers": ["Software Engineer"]})
    analyze_all = AnalyzeRequest.model_validate(analyze_body)
    rows: list[tuple[str, float, float, int]] = []
    for name, call, n in [
        ("predict (top 5)", lambda: recommender.predict(predict), runs),
        ("analyze (1 career)", lambda: recommender.analyze(analyze_one), runs // 4),
        ("analyze (all careers)", lambda: recommender.analyze(analyze_all), runs // 10),
    ]:
        samples = timed_ms(call, n, warm=20)
        rows.append((name, statistics.median(samples), percentile(samples, 99), n))
    return rows


async def load(url: str, method: str, seconds: float, concurrency: int) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) for `seconds` of closed-loop load."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                if method == "POST":
                    response = await client.post(url, json=STUDENT)
                else:
                    response = await client.get(url)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{errors} non-200 answers from {url}")
    return len(latencies) / elapsed, statistics.median(latencies)


def wrk_load(url: str, method: str, seconds: float, concurrency: int) -> tuple[float, float]:
    """Requests per second and p50 (ms) measured by wrk, a C load generator."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    body = json.dumps(STUDENT).replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        f'wrk.method = "{method}"\nwrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds:.0f}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-200 answers from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p50 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p50


HTTP_ROUTES = [
    ("GET /health/live (trivial)", "/health/live", "GET"),
    ("POST /api/v1/career/predict", "/api/v1/career/predict", "POST"),
]


def http_throughput(
    model_dir: Path, seconds: float, workers: int, concurrency: int, rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """(req/s, p50 ms) per route and round. This VM's speed drifts by tens of percent
    within seconds, so the routes alternate in short rounds instead of one long run each."""
    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_HOST": "127.0.0.1",
        "FASTAPI_PORT": str(port),
        "WORKERS": str(workers),
        "CAREER_MODEL_DIR": str(model_dir),
        "CLIP_ENABLED": "false",
        "LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=20)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in HTTP_ROUTES}
        for round_ in range(rounds + 1):  # round 0 warms up
            for name, path, method in HTTP_ROUTES:
                duration = seconds if round_ else 1.0
                if shutil.which("wrk"):
                    result = wrk_load(base + path, method, duration, concurrency)
                else:
                    result = asyncio.run(load(base + path, method, duration, concurrency))
                if round_:
                    samples[name].append(result)
        return samples
    finally:
        server.terminate()
        server.wait(timeout=10)


def latency_during_training(model_dir: Path, runs: int) -> tuple[float, float, float, float]:
    """Predict p50/p99 alone, then while a niced training process (as a retrain job) runs."""
    recommender = CareerRecommender(VersionRegistry(model_dir))
    recommender.load()
    request = PredictRequest.model_validate(STUDENT)

    def sample() -> list[float]:
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            recommender.predict(request)
            out.append((time.perf_counter() - start) * 1000)
            time.sleep(0.002)  # a steady trickle of requests, not a busy loop
        return out

    quiet = sample()
    scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))
    trainer = subprocess.Popen(
        [
            "nice",
            "-n",
            "10",
            sys.executable,
            "-m",
            "app.train",
            "--model-dir",
            str(scratch),
            "--students",
            "8000",
            "--no-activate",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)  # past imports, into cross-validation
    busy = sample()
    still_training = trainer.poll() is None
    trainer.kill()
    trainer.wait()
    if not still_training:
        print("(training ended before sampling did; use more --runs)")
    return (
        statistics.median(quiet),
        percentile(quiet, 99),
        statistics.median(busy),
        percentile(busy, 99),
    )


def candidate_models(store: VersionRegistry) -> tuple[str, dict[str, str]]:
    """One version per default candidate, trained alone on the public CSV (or synthetic
    students when it is absent); (data source, candidate -> version)."""
    if PUBLIC_CSV.exists():
        source = PUBLIC_CSV.name
        data = prepare_frame(pd.read_csv(PUBLIC_CSV, dtype=str), mapping=PUBLIC_MAPPING)
    else:
        source = "2,000 synthetic students"
        data = prepare_frame(generate_students(default_catalog(), 2000, seed=7))
    versions = {}
    for name in DEFAULT_CANDIDATES:
        trained = train_model(data, config=TrainingConfig(candidates=(name,)))
        versions[name] = store.write(
            trained, data, catalog=default_catalog(), source="benchmark", description=name
        )
    return source, versions


def candidate_latency(
    store: VersionRegistry, versions: dict[str, str], runs: int
) -> list[tuple[str, str, float, float, float, float, float, str]]:
    """Per candidate: predict p50/p99 compiled, p50/p99 through sklearn, analyze (all) p50."""
    predict = PredictRequest.model_validate(STUDENT)
    analyze_all = AnalyzeRequest.model_validate({k: v for k, v in STUDENT.items() if k != "top_k"})
    rows = []
    for name, version in versions.items():
        store.set_active(version)
        recommender = CareerRecommender(store)
        recommender.load()
        model = recommender.model
        kind = "compiled" if model.compiled is not None else f"sklearn ({model.compile_problem})"
        fast = timed_ms(partial(recommender.predict, predict), runs, warm=20)
        analyze = timed_ms(partial(recommender.analyze, analyze_all), max(20, runs // 10), warm=5)
        model.compiled = None  # the same model through sklearn's predict_proba
        slow = timed_ms(partial(recommender.predict, predict), max(50, runs // 10), warm=5)
        rows.append(
            (
                name,
                version,
                statistics.median(fast),
                percentile(fast, 99),
                statistics.median(slow),
                percentile(slow, 99),
                statistics.median(analyze),
                kind,
            )
        )
    return rows


def print_http(samples: dict[str, list[tuple[float, float]]]) -> None:
    trivial = samples[HTTP_ROUTES[0][0]]
    print("| route | req/s | p50 ms | vs trivial (median, range) |\n|---|---|---|---|")
    for name, _, _ in HTTP_ROUTES:
        rounds = samples[name]
        ratios = [rps / base for (rps, _), (base, _) in zip(rounds, trivial, strict=True)]
        print(
            f"| {name} | {statistics.median(r for r, _ in rounds):.0f} "
            f"| {statistics.median(p for _, p in rounds):.2f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Career latency and throughput benchmark.")
    parser.add_argument("--model-dir", type=Path, default=get_settings().career_model_dir)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0, help="per route and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--parts", default="service,training,http,candidates")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    client = "wrk" if shutil.which("wrk") else "httpx (install wrk: it needs far less CPU)"
    if (
        parts & {"service", "training", "http"}
        and not VersionRegistry(args.model_dir).active_version()
    ):
        # A fresh checkout has no model until the service first starts: build it the same way.
        print(f"No active model in {args.model_dir}: building the default one first.")
        subprocess.run(
            [sys.executable, "-m", "app.train", "--if-missing", "--model-dir", str(args.model_dir)],
            check=True,
        )

    if "service" in parts:
        print(f"\nService layer ({args.model_dir}), in-process, ms:\n")
        print("| call | p50 | p99 | runs |\n|---|---|---|---|")
        for name, p50, p99, n in service_latency(args.model_dir, args.runs):
            print(f"| {name} | {p50:.3f} | {p99:.3f} | {n} |")

    if "training" in parts:
        q50, q99, b50, b99 = latency_during_training(args.model_dir, min(args.runs, 1500))
        print("\nPredict while a retraining job trains (nice 10, like the retrain worker), ms:\n")
        print("| condition | p50 | p99 |\n|---|---|---|")
        print(f"| idle | {q50:.3f} | {q99:.3f} |")
        print(f"| during training | {b50:.3f} | {b99:.3f} |")

    if "http" in parts:
        print(
            f"\nHTTP ({args.model_dir}), uvicorn with {args.workers} worker(s), "
            f"{args.concurrency} connections from {client}, {args.rounds} alternating rounds "
            f"of {args.seconds:.0f} s, medians:\n"
        )
        print_http(
            http_throughput(
                args.model_dir, args.seconds, args.workers, args.concurrency, args.rounds
            )
        )

    if "candidates" in parts:
        scratch = Path(tempfile.mkdtemp(prefix="bench-candidates-"))
        try:
            store = VersionRegistry(scratch)
            source, versions = candidate_models(store)
            print(f"\nEach default candidate trained alone on {source}; service layer, ms:\n")
            print(
                "| candidate | predict p50 | p99 | through sklearn p50 | p99 "
                "| analyze (all careers) p50 | served by |\n|---|---|---|---|---|---|---|"
            )
            for name, _, f50, f99, s50, s99, a50, kind in candidate_latency(
                store, versions, args.runs
            ):
                print(
                    f"| {name} | {f50:.3f} | {f99:.3f} | {s50:.3f} | {s99:.3f} | {a50:.3f} "
                    f"| {kind} |"
                )
            store.set_active(versions["hist_gradient_boosting"])
            print(
                f"\nHTTP with the hist_gradient_boosting model active, {args.concurrency} "
                f"connections from {client}, {args.rounds} alternating rounds of "
                f"{args.seconds:.0f} s, medians:\n"
            )
            print_http(
                http_throughput(scratch, args.seconds, args.workers, args.concurrency, args.rounds)
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
