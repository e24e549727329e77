"""What operators get: Prometheus metrics (one worker and several), trace ids in the logs,
and a graceful shutdown that finishes the requests in flight."""

import io
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_registry import ADMIN, students_csv
from tests.conftest import TINY_CLIP, TINY_CLIP_ENV, serve
from tests.deploy.test_manifests import METRICS

pytestmark = pytest.mark.integration

STUDENT = {"academic_scores": {"math": 90, "physics": 85}, "top_k": 3}
PREDICT = ("/api/v1/career/predict", "POST", "200")


def png_bytes(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format="PNG")
    return out.getvalue()


def exposed(get: Callable[[str], Any]) -> tuple[set[str], dict[Any, float]]:
    """/metrics as (family names, {(sample name, labels): value})."""
    response = get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(response.text))
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }
    return {family.name for family in families}, samples


def _sample_names(metric: str) -> set[str]:
    base = metric.removesuffix("_total")
    return {metric, base + "_total", base + "_bucket", base + "_count", base + "_sum"}


def scrape(get: Callable[[str], Any]) -> dict[Any, float]:
    return exposed(get)[1]


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: dict[Any, float], route: str, method: str, status: str) -> float:
    return value(
        samples, "skill_compass_ml_http_requests_total", route=route, method=method, status=status
    )


def test_metric_names_labels_and_exact_counts(make_client: Callable[..., TestClient]) -> None:
    client = make_client(**TINY_CLIP)
    before = scrape(client.get)
    for _ in range(3):
        assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200
    assert client.post("/api/v1/career/analyze", json=STUDENT | {"top_k": None}).status_code in (
        200,
        422,
    )
    image = png_bytes((200, 30, 30))
    files = {"image_a": ("a.png", image, "image/png"), "image_b": ("b.png", image, "image/png")}
    for _ in range(2):
        assert client.post("/api/v1/clip/compare", files=files).status_code == 200
    assert client.get("/api/v1/nowhere").status_code == 404
    families, after = exposed(client.get)

    # Every metric the dashboard and the deploy tests know is exposed, with its labels.
    missing = {m for m in METRICS if m.removesuffix("_total") not in families}
    assert not missing, f"not exposed: {sorted(missing)}"
    for (name, labels), _ in after.items():
        family = next((m for m in METRICS if name in _sample_names(m)), None)
        if family is not None:
            expected = METRICS[family][1] | ({"le"} if name.endswith("_bucket") else set())
            assert {k for k, _ in labels} == expected, (name, labels)

    def grew(name: str, **labels: str) -> float:  # counters are per process: compare
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        grew("skill_compass_ml_http_requests_total", route=PREDICT[0], method="POST", status="200")
        == 3
    )
    assert grew("skill_compass_ml_career_predictions_total", route="predict") == 3
    # Route templates, never raw paths: an unknown path does not make a new series.
    assert (
        grew("skill_compass_ml_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert not any(("/api/v1/nowhere" in str(labels)) for _, labels in after)
    assert value(after, "skill_compass_ml_model_state", model="career", state="loaded") == 1
    assert value(after, "skill_compass_ml_model_state", model="clip", state="loaded") == 1
    assert value(after, "skill_compass_ml_model_state", model="clip", state="loading") == 0
    assert (
        value(
            after,
            "skill_compass_ml_clip_runtime_info",
            backend="torch",
            precision="fp32",
            device="cpu",
        )
        == 1
    )
    # The two images of the first compare are looked up together, both missing: one forward
    # pass of two rows. The second compare finds both in the cache.
    assert grew("skill_compass_ml_clip_cache_misses_total") == 2
    assert grew("skill_compass_ml_clip_cache_hits_total") == 2
    assert grew("skill_compass_ml_clip_batch_size_count", tower="image") == 1
    assert grew("skill_compass_ml_clip_batch_size_sum", tower="image") == 2
    assert grew("skill_compass_ml_clip_preprocess_seconds_count") == 2
    model = client.get("/api/v1/career/model").json()["data"]
    assert value(after, "skill_compass_ml_career_model_info", version=model["version"]) == 1
    assert (
        value(after, "skill_compass_ml_career_model_holdout_top1")
        == model["metrics"]["holdout"]["top1_accuracy"]
    )
    assert value(after, "process_resident_memory_bytes") > 0


def test_metrics_can_be_turned_off(make_client: Callable[..., TestClient]) -> None:
    assert make_client(metrics_enabled=False).get("/metrics").status_code == 404


@pytest.mark.parametrize("workers", [1, 2])
def test_counters_add_up_over_workers(career_model_dir: Path, tmp_path: Path, workers: int) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier start")
    process, base = serve(
        career_model_dir,
        tmp_path,
        WORKERS=str(workers),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    try:
        # /health/ready answered from one worker; the other may still be loading its model.
        ready, deadline = 0, time.monotonic() + 60
        while ready < 10 and time.monotonic() < deadline:
            response = httpx.post(
                base + "/api/v1/career/predict", json=STUDENT, headers={"Connection": "close"}
            )
            ready = ready + 1 if response.status_code == 200 else 0
        before = scrape(lambda path: httpx.get(base + path))
        for _ in range(40):  # a new connection each time, so the workers share them
            response = httpx.post(
                base + "/api/v1/career/predict", json=STUDENT, headers={"Connection": "close"}
            )
            assert response.status_code == 200
        after = scrape(lambda path: httpx.get(base + path))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert requests_of(after, *PREDICT) - requests_of(before, *PREDICT) == 40
    grew = value(after, "skill_compass_ml_career_predictions_total", route="predict") - value(
        before, "skill_compass_ml_career_predictions_total", route="predict"
    )
    assert grew == 40
    assert value(after, "skill_compass_ml_model_state", model="career", state="loaded") == 1
    if workers > 1:
        # Each worker wrote its own samples; a stale file from an earlier start is gone.
        assert not (metrics_dir / "counter_999999.db").exists()


def test_the_trace_id_of_traceparent_is_in_every_log_line(
    career_model_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    process, base = serve(career_model_dir, tmp_path, LOG_FORMAT="json", log=log)
    try:
        headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "X-Request-ID": "req-42"}
        response = httpx.post(base + "/api/v1/career/predict", json=STUDENT, headers=headers)
        assert response.status_code == 200 and response.headers["x-request-id"] == "req-42"
        # A malformed traceparent is ignored, not echoed into the logs.
        bad = {"traceparent": "00-zzzz-nothex-01", "X-Request-ID": "req-43"}
        assert httpx.get(base + "/health/live", headers=bad).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("request_id") == "req-42"]
    assert ours and all(line.get("trace_id") == trace for line in ours)
    assert all(
        line.get("trace_id") in (None, "-") for line in lines if line.get("request_id") == "req-43"
    )


def test_sigterm_finishes_the_request_in_flight_and_records_the_retrain(
    career_model_dir: Path, tmp_path: Path
) -> None:
    process, base = serve(
        career_model_dir,
        tmp_path,
        **TINY_CLIP_ENV,
        CLIP_BATCH_WAIT_MS="1000",  # the batcher holds a lone request for a second
        CLIP_MAX_BATCH="64",
        SHUTDOWN_GRACE_SECONDS="20",
    )
    job = httpx.post(
        base + "/api/v1/career/retrain",
        files={"file": ("s.csv", students_csv(n=3000), "text/csv")},
        headers=ADMIN,
    ).json()["data"]
    image = png_bytes((30, 30, 200))
    result: dict[str, Any] = {}

    def compare() -> None:
        files = {"image_a": ("a.png", image, "image/png"), "image_b": ("b.png", image, "image/png")}
        result["response"] = httpx.post(base + "/api/v1/clip/compare", files=files, timeout=30)

    caller = threading.Thread(target=compare)
    caller.start()
    time.sleep(0.4)  # the request is in the batcher now
    process.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    assert process.wait(timeout=30) == 0
    assert result["response"].status_code == 200
    assert result["response"].json()["data"]["similarity"] > 0.99
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/health/live", timeout=2)
    record = json.loads((career_model_dir / ".jobs" / f"{job['id']}.json").read_text())
    assert record["state"] == "failed" and "shut down" in record["error"]
    assert not list((career_model_dir / ".jobs").glob("*.csv"))


def test_otel_export_is_optional(make_client: Callable[..., TestClient]) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is exported; with it, the service starts
    and serves whether or not the optional packages are installed."""
    assert make_client().post("/api/v1/career/predict", json=STUDENT).status_code == 200
    client = make_client(otel_exporter_otlp_endpoint="http://127.0.0.1:9")  # nothing listens
    assert client.post("/api/v1/career/predict", json=STUDENT).status_code == 200


def test_spans_are_exported_to_the_otlp_endpoint(
    make_client: Callable[..., TestClient],
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    received: list[bytes] = []
    collector = _otlp_collector(received)
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        client = make_client(otel_exporter_otlp_endpoint=endpoint)
        trace = "0af7651916cd43dd8448eb211c80319c"
        headers = {"traceparent": f"00-{trace}-b7ad6b7169203331-01"}
        assert (
            client.post("/api/v1/career/predict", json=STUDENT, headers=headers).status_code == 200
        )
        client.__exit__(None, None, None)  # shutdown flushes the spans
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.shutdown()
    assert received, "no spans reached the OTLP endpoint"
    assert any(bytes.fromhex(trace) in body for body in received)


def _otlp_collector(received: list[bytes]) -> Any:
    """A tiny OTLP/HTTP endpoint that keeps the bodies posted to /v1/traces."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/v1/traces":
                received.append(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
