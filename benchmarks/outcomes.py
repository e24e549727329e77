"""Closed-loop benchmark: outcome ingest over HTTP, and what drift monitoring costs predict.

    .venv/bin/python -m benchmarks.outcomes [--records 3000] [--batch 100] [--concurrency 4]
                                            [--rounds 6] [--seconds 2] [--postgres URL]

Prints two tables.
1. Ingest: records/s through `POST /api/v1/career/outcomes` in batches of `--batch`, with
   `--concurrency` batches in flight, on SQLite (the default store) and on PostgreSQL (a
   database created for the run on the server of `--postgres`, dropped after; skipped with
   the reason when none answers). Target: >= 2,000 records/s on PostgreSQL on a 2-core box.
2. Predict: HTTP `POST /api/v1/career/predict` req/s of two servers started side by side,
   MONITORING_ENABLED=true and false, in alternating rounds (this VM's speed drifts within
   seconds), with the ratio per round. Target: monitoring on >= 0.9x off.
The load client shares the machine's cores with the servers, as in benchmarks/career.py.
"""

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.career import load
from benchmarks.common import start_server, wait_ready
from tests.shifted import as_outcome, usual_students

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "career_models"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def serve(models: Path, **settings: str) -> tuple["subprocess.Popen[bytes]", str]:
    env = {
        "CAREER_MODEL_DIR": str(models),
        "CLIP_ENABLED": "false",
        "LOG_FORMAT": "json",
        "DEBUG": "false",
        "UPLOAD_DIR": str(models.parent / "uploads"),
        **settings,
    }
    server, base = start_server(env)
    wait_ready(base, timeout=60)
    return server, base


def copy_models(scratch: Path, name: str) -> Path:
    target = scratch / name
    shutil.copytree(FIXTURE_MODELS, target)
    return target


def batches(records: int, size: int) -> list[dict[str, Any]]:
    frame = usual_students(records, seed=77)
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    run = uuid.uuid4().hex[:8]
    rows = [
        as_outcome(row, when, idempotency_key=f"{run}-{i}", subject_id=f"s-{i % 500}")
        for i, (_, row) in enumerate(frame.iterrows())
    ]
    return [{"outcomes": rows[i : i + size]} for i in range(0, len(rows), size)]


async def ingest(base: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Records per second for posting every batch, `concurrency` at a time."""
    queue = list(bodies)
    stored = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        # One batch first: the store connects and migrates on first use, not timed.
        warm = await client.post("/api/v1/career/outcomes", json=queue.pop())
        warm.raise_for_status()

        async def worker() -> None:
            nonlocal stored
            while queue:
                body = queue.pop()
                response = await client.post("/api/v1/career/outcomes", json=body)
                response.raise_for_status()
                stored += response.json()["data"]["stored"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return stored / elapsed


def postgres_database(admin: str) -> tuple[str, str] | str:
    """(URL, name) of a fresh database, or why there is none."""
    try:
        engine = create_engine(
            admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        name = f"bench_outcomes_{uuid.uuid4().hex[:8]}"
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
    except Exception as exc:
        return str(exc).strip().splitlines()[0][:160]
    return make_url(admin).set(database=name).render_as_string(hide_password=False), name


def drop_database(admin: str, name: str) -> None:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def ingest_table(scratch: Path, args: argparse.Namespace) -> None:
    print(
        f"\nIngest: {args.records} outcomes over HTTP in batches of {args.batch}, "
        f"{args.concurrency} in flight, one uvicorn worker:\n"
    )
    print("| store | records/s | batches |\n|---|---|---|")
    bodies = batches(args.records + args.batch, args.batch)
    stores: list[tuple[str, dict[str, str], str | None]] = [("SQLite (default)", {}, None)]
    found = postgres_database(args.postgres)
    if isinstance(found, str):
        print(f"| PostgreSQL | skipped: {found} | |")
    else:
        stores.append(("PostgreSQL", {"DATABASE_URL": found[0]}, found[1]))
    for label, settings, database in stores:
        server, base = serve(copy_models(scratch, f"models-{len(label)}"), **settings)
        try:
            rate = asyncio.run(ingest(base, [dict(b) for b in bodies], args.concurrency))
            print(f"| {label} | {rate:,.0f} | {len(bodies) - 1} |")
        finally:
            server.terminate()
            server.wait(timeout=30)
            if database:
                drop_database(args.postgres, database)


def monitoring_table(scratch: Path, args: argparse.Namespace) -> None:
    on, on_url = serve(copy_models(scratch, "models-on"), MONITORING_ENABLED="true")
    off, off_url = serve(copy_models(scratch, "models-off"), MONITORING_ENABLED="false")
    samples: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for round_ in range(args.rounds + 1):  # round 0 warms both up
            order = [("on", on_url), ("off", off_url)]
            if round_ % 2:
                order.reverse()  # neither always runs first
            for label, base in order:
                duration = args.seconds if round_ else 1.0
                rps, _ = asyncio.run(
                    load(
                        f"{base}/api/v1/career/predict", "POST", duration, args.predict_concurrency
                    )
                )
                if round_:
                    samples[label].append(rps)
    finally:
        for server in (on, off):
            server.terminate()
            server.wait(timeout=30)
    ratios = [a / b for a, b in zip(samples["on"], samples["off"], strict=True)]
    print(
        f"\nPredict over HTTP, monitoring on vs off (two servers, {args.rounds} alternating "
        f"rounds of {args.seconds:.0f} s, {args.predict_concurrency} connections from httpx):\n"
    )
    print("| MONITORING_ENABLED | req/s (median) | on / off per round (median, range) |")
    print("|---|---|---|")
    print(f"| false | {statistics.median(samples['off']):.0f} | |")
    print(
        f"| true | {statistics.median(samples['on']):.0f} | {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Outcome ingest and monitoring cost.")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--predict-concurrency", type=int, default=16)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="maintenance URL")
    parser.add_argument("--parts", default="ingest,monitoring")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="bench-outcomes-"))
    try:
        if "ingest" in parts:
            ingest_table(scratch, args)
        if "monitoring" in parts:
            monitoring_table(scratch, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
