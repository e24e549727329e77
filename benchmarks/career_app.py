"""Where predict's HTTP time goes: the cost per request inside the app, without sockets.

    .venv/bin/python -m benchmarks.career_app [--model-dir DIR] [--requests 300] [--blocks 20]

Calls the ASGI app in-process, as uvicorn would but without sockets or HTTP parsing, so
the middleware, routing, FastAPI, the service and serialisation are all counted. Three
cases alternate in blocks, timed in process CPU time per request:

- the trivial route (`GET /health/live`);
- predict;
- predict with the service's answer computed in advance: what the framework and the
  envelope cost on their own.

Predict minus the precomputed case is the service as it runs between other requests,
with colder caches than in the service-layer loop of `benchmarks.career`. CPU time and
the minimum over blocks make this far steadier than HTTP throughput on a shared VM, so
it shows changes of a few percent that the HTTP benchmark cannot.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import Message

from app.config import Settings, get_settings
from app.main import create_app
from app.schemas.career import PredictRequest
from benchmarks.career import STUDENT

BODY = json.dumps(STUDENT).encode()


async def call(app: FastAPI, method: str, path: str, body: bytes) -> None:
    """One request through the whole ASGI stack; raises unless it answers 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:  # nothing more to read: wait like a connection that stays open
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"{method} {path} answered {status}")


async def measure(model_dir: Path, requests: int, blocks: int) -> dict[str, list[float]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, career_model_dir=model_dir, clip_enabled=False, log_format="json"
    )
    app = create_app(settings)
    with open(os.devnull, "w") as devnull:
        for handler in logging.getLogger().handlers:  # the log line is kept, not printed
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        async with app.router.lifespan_context(app):
            career = app.state.career
            answer = career.predict(PredictRequest.model_validate(STUDENT))

            async def precomputed(_: PredictRequest) -> Any:
                return answer

            def predict_precomputed() -> Any:
                career.predict_async = precomputed  # this instance only, for this block
                return call(app, "POST", "/api/v1/career/predict", BODY)

            cases: dict[str, Callable[[], Any]] = {
                "GET /health/live (trivial)": lambda: call(app, "GET", "/health/live", b""),
                "POST /api/v1/career/predict": lambda: call(
                    app, "POST", "/api/v1/career/predict", BODY
                ),
                "predict, answer precomputed": predict_precomputed,
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for block in range(blocks + 1):  # block 0 warms up
                for name, request in cases.items():
                    started = time.process_time()  # all threads: a pool-run predict too
                    for _ in range(requests):
                        await request()
                    vars(career).pop("predict_async", None)
                    if block:
                        samples[name].append((time.process_time() - started) / requests * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-request cost of predict inside the app.")
    parser.add_argument("--model-dir", type=Path, default=get_settings().career_model_dir)
    parser.add_argument("--requests", type=int, default=300, help="per case and block")
    parser.add_argument("--blocks", type=int, default=20)
    args = parser.parse_args()

    samples = asyncio.run(measure(args.model_dir, args.requests, args.blocks))
    lowest = {name: min(values) for name, values in samples.items()}
    trivial = lowest["GET /health/live (trivial)"]
    print(
        f"\nIn-process ASGI, process CPU time per request, {args.blocks} interleaved blocks "
        f"of {args.requests} requests, us:\n"
    )
    print("| case | min | median | min minus trivial |\n|---|---|---|---|")
    for name, values in samples.items():
        print(
            f"| {name} | {lowest[name]:.0f} | {statistics.median(values):.0f} "
            f"| {lowest[name] - trivial:.0f} |"
        )
    service = lowest["POST /api/v1/career/predict"] - lowest["predict, answer precomputed"]
    print(f"\nThe service, between requests: {service:.0f} us a request.")


if __name__ == "__main__":
    main()
