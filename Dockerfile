# Skill Compass ML service. Build: docker build -t skill-compass-ml .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 app
WORKDIR /srv
# Everything the service writes, in three directories the app user owns. With a read-only
# root filesystem (docker run --read-only), mount them as volumes (uploads: a tmpfs).
ENV UPLOAD_DIR=/srv/uploads \
    CAREER_MODEL_DIR=/srv/ml_models/career \
    CLIP_MODEL_CACHE_DIR=/srv/ml_models/clip
RUN mkdir -p "$UPLOAD_DIR" "$CAREER_MODEL_DIR" "$CLIP_MODEL_CACHE_DIR" \
    && chown -R app:app /srv

# CPU wheels of torch by default (the pinned release, without CUDA: a far smaller image).
# Pass --build-arg TORCH_INDEX_URL=https://pypi.org/simple for the default (CUDA) wheels.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.txt requirements-otel.txt ./
RUN pip install --extra-index-url "$TORCH_INDEX_URL" -r requirements.txt
# OpenTelemetry export (OTEL_EXPORTER_OTLP_ENDPOINT): --build-arg WITH_OTEL=1.
ARG WITH_OTEL=0
RUN if [ "$WITH_OTEL" = "1" ]; then pip install -r requirements-otel.txt; fi

COPY --chown=app:app app ./app
COPY --chown=app:app ml_models ./ml_models

USER app
# The default career model is built at image build time, so containers start serving at once.
RUN python -m app.train --if-missing
# CLIP weights: fetched at build time where the build has network (PREFETCH_CLIP=1, the
# default), else the service starts with CLIP degraded and says why in /health.
ARG PREFETCH_CLIP=1
RUN if [ "$PREFETCH_CLIP" = "1" ]; then python -m app.prefetch; fi

# Run with keys: docker run -e API_KEYS=<key>[,<key>...] ... Without them the service
# listens on the container's loopback only (unreachable through -p), and says so in its
# log; ALLOW_UNAUTHENTICATED_NETWORK=true opens it without keys, on purpose.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status != 200)"
CMD ["python", "-m", "app"]
