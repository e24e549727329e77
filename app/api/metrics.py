"""GET /metrics: Prometheus' text format (not the JSON envelope: Prometheus reads this)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.core import metrics
from app.services.served import ServedModel

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request) -> Response:
    """Every metric of every worker; model states are refreshed for this scrape."""
    served: dict[str, ServedModel] = request.app.state.models
    metrics.observe_models((name, model.status()) for name, model in served.items())
    outcomes = getattr(request.app.state, "outcomes", None)
    if outcomes is not None:
        outcomes.publish_drift()  # this process's window, as of this scrape
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
