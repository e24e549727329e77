"""The real server (`python -m app`) against clients that hold connections and memory:
where it listens without keys, slow bodies, many connections, large bodies at once."""

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serve

pytestmark = pytest.mark.integration

PREDICT = "/api/v1/career/predict"
STUDENT = b'{"academic_scores": {"math": 80}}'


@pytest.fixture
def server(career_model_dir: Path, tmp_path: Path) -> Iterator[Any]:
    """Start servers with the given settings (environment variables); all stopped after."""
    started: list[Any] = []

    def start(**settings: str) -> tuple[str, int, Path]:
        log = tmp_path / f"server-{len(started)}.log"
        process, base = serve(career_model_dir, tmp_path, log=log, **settings)
        started.append(process)
        return "127.0.0.1", int(base.rsplit(":", 1)[1]), log

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def split_answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and JSON body of one HTTP/1.1 answer."""
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def read_answer(conn: socket.socket, timeout: float = 10) -> bytes:
    """Everything up to the end of one answer with a Content-Length body."""
    conn.settimeout(timeout)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += conn.recv(65_536)
    _, headers, _ = split_answer(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    while len(raw.partition(b"\r\n\r\n")[2]) < int(headers["content-length"]):
        raw += conn.recv(65_536)
    return raw


# --- not exposed by accident ------------------------------------------------------------------


def listening_on(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:  # IPv4, stored as a little-endian word
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # IPv6: four little-endian words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_without_keys_it_listens_on_loopback_only_and_says_why(server: Any) -> None:
    _, port, log = server(FASTAPI_HOST="0.0.0.0", API_KEYS="")
    assert listening_on(port) == {"127.0.0.1"}
    text = log.read_text()
    assert "listens on 127.0.0.1 only, not on FASTAPI_HOST=0.0.0.0" in text
    assert "ALLOW_UNAUTHENTICATED_NETWORK=true" in text and "API_KEYS" in text


def test_with_keys_it_listens_where_it_is_told(server: Any) -> None:
    # All interfaces, as a container needs; the keys keep /api/v1 closed meanwhile.
    _, port, log = server(FASTAPI_HOST="0.0.0.0", API_KEYS="test-key")
    assert listening_on(port) == {"0.0.0.0"}
    assert "listens on 127.0.0.1 only" not in log.read_text()


# --- slow clients -------------------------------------------------------------------------------


def test_bodies_sent_a_byte_a_second_get_408_and_lose_their_connection(server: Any) -> None:
    host, port, _ = server(BODY_TIMEOUT_SECONDS="2")
    clients = [socket.create_connection((host, port), timeout=10) for _ in range(5)]
    answers: dict[socket.socket, bytes] = {c: b"" for c in clients}
    closed_after: dict[socket.socket, float] = {}
    started = time.monotonic()
    for conn in clients:
        conn.sendall(head(PREDICT, 1000))
    next_byte = started + 0.5
    while len(closed_after) < len(clients) and time.monotonic() - started < 15:
        readable, _, _ = select.select(list(set(clients) - set(closed_after)), [], [], 0.1)
        for conn in readable:
            chunk = conn.recv(65_536)
            answers[conn] += chunk
            if not chunk:  # the server closed the connection
                closed_after[conn] = time.monotonic() - started
        if time.monotonic() >= next_byte:  # one byte a second, until answered
            for conn in clients:
                if not answers[conn]:
                    conn.sendall(b" ")
            next_byte += 1
    for conn in clients:
        conn.close()

    assert len(closed_after) == len(clients), "a connection stayed open"
    assert all(2 <= seconds < 6 for seconds in closed_after.values()), closed_after
    for raw in answers.values():
        status, headers, body = split_answer(raw)
        assert status == 408
        assert headers["connection"] == "close"
        assert body["success"] is False and body["error"]["code"] == "REQUEST_TIMEOUT"
    assert httpx.get(f"http://{host}:{port}/health/live", timeout=5).status_code == 200


def test_beyond_max_connections_uvicorn_answers_503(server: Any) -> None:
    host, port, _ = server(MAX_CONNECTIONS="3")
    live = f"http://{host}:{port}/health/live"
    idle = [socket.create_connection((host, port), timeout=10)]
    time.sleep(0.5)
    assert httpx.get(live, timeout=5).status_code == 200  # 2 of 3 open, its own included
    idle.append(socket.create_connection((host, port), timeout=10))
    time.sleep(0.5)
    refused = httpx.get(live, timeout=5)
    assert (refused.status_code, refused.text) == (503, "Service Unavailable")
    assert refused.headers["connection"] == "close"
    for conn in idle:
        conn.close()
    time.sleep(0.5)
    assert httpx.get(live, timeout=5).status_code == 200


# --- body bytes in flight ---------------------------------------------------------------------


def test_bodies_beyond_the_budget_wait_their_turn_unread(server: Any) -> None:
    """A 0.4 MiB budget, 250 KB bodies: while one is arriving, a second gets 429 before
    sending a byte of its body; once the first ends, the next one goes through."""
    host, port, _ = server(
        MAX_BODY_MB_IN_FLIGHT="0.4",
        # Every route's limit within the budget: predict takes 300 KiB, the image and
        # training routes less.
        MAX_JSON_BODY_KB="300",
        MAX_UPLOAD_MB="0.05",
        MAX_IMAGES_PER_REQUEST="1",
        MAX_TRAINING_UPLOAD_MB="0.05",
    )
    body = STUDENT + b" " * (250_000 - len(STUDENT))
    with socket.create_connection((host, port), timeout=10) as first:
        first.sendall(head(PREDICT, len(body)) + body[:1000])
        time.sleep(1)  # its head is in: its 250 KB are reserved
        with socket.create_connection((host, port), timeout=10) as second:
            second.sendall(head(PREDICT, len(body)))  # the head only
            status, headers, answer = split_answer(read_answer(second))
        assert status == 429
        assert headers["retry-after"] == "1"
        assert answer["error"]["code"] == "BODY_BUDGET_EXCEEDED"

        first.sendall(body[1000:])
        status, _, answer = split_answer(read_answer(first))
        assert status == 200 and answer["success"] is True

    base = f"http://{host}:{port}"
    again = httpx.post(
        base + PREDICT, content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert again.status_code == 200, again.text
    assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
