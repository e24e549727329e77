"""Optional OpenTelemetry tracing: spans exported over OTLP/HTTP when an endpoint is set.

The packages are an optional group (requirements-otel.txt). Without an endpoint nothing is
imported or exported; with one but without the packages, the service says so once and
serves as usual. Incoming `traceparent` headers continue the gateway's traces.
"""

import logging
from collections.abc import Callable

from fastapi import FastAPI

from app.config import Settings

logger = logging.getLogger(__name__)


def instrument(app: FastAPI, settings: Settings) -> Callable[[], None] | None:
    """Trace every request of `app`; the returned function flushes and stops the export."""
    endpoint = settings.otel_exporter_otlp_endpoint.strip()
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install -r requirements-otel.txt): no spans are exported"
        )
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="/health,/metrics"
    )
    logger.info("exporting traces to %s", endpoint)
    return provider.shutdown
