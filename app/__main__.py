"""`python -m app`: serve on FASTAPI_HOST:FASTAPI_PORT with WORKERS processes.

Without API_KEYS, only this machine may reach the service unless the operator says
otherwise: a host other than loopback is replaced by 127.0.0.1 (with a warning) unless
ALLOW_UNAUTHENTICATED_NETWORK=true.

With several workers, /metrics must add up what every worker counted: each start gets a
fresh PROMETHEUS_MULTIPROC_DIR (or the one given, emptied), set before the workers start.
On SIGTERM uvicorn stops accepting, waits up to SHUTDOWN_GRACE_SECONDS for the requests in
flight, runs the app's shutdown (CLIP closes, a retraining job is stopped and recorded)
and exits 0.
"""

import atexit
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import uvicorn

from app.config import Settings, get_settings
from app.core.logging import configure_logging

logger = logging.getLogger("app")

LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def listen_host(settings: Settings) -> str:
    """FASTAPI_HOST, unless that would open every /api/v1 route to the network."""
    host = settings.fastapi_host
    if settings.api_keys or settings.allow_unauthenticated_network or _is_loopback(host):
        return host
    logger.warning(
        "API_KEYS is not set, so the service listens on %s only, not on FASTAPI_HOST=%s: "
        "without keys every /api/v1 route would be open to anyone who can reach it. Set "
        "API_KEYS, or ALLOW_UNAUTHENTICATED_NETWORK=true to serve other hosts without keys.",
        LOOPBACK,
        host,
    )
    return LOOPBACK


def _metrics_dir() -> None:
    """A per-start directory for the workers' metric files; stale files never count."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return
    folder = Path(tempfile.mkdtemp(prefix="skill-compass-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def main() -> None:
    settings = get_settings()
    configure_logging(fmt=settings.log_format, debug=settings.debug)
    given = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    if given or (settings.workers > 1 and settings.metrics_enabled):
        _metrics_dir()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found installed: this one, so a clean shutdown exits 0, not "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "app.main:app",
        host=listen_host(settings),
        port=settings.fastapi_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # Per process: a request that arrives while MAX_CONNECTIONS connections (its own
        # included) are open, or as many requests are running, gets uvicorn's own plain-text
        # 503 and the connection is closed. Idle keep-alive connections count, hence their
        # short timeout.
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds,
    )


if __name__ == "__main__":
    main()
