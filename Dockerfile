# Skill Compass ML service: two images from one file.
#
#   docker build -t skill-compass-ml .                        # `serve` (the default, last
#       stage): the API, the career model and CLIP on ONNX Runtime; no torch (~0.6 GB)
#   docker build --target torch -t skill-compass-ml-torch .   # `torch`: serve + torch CPU
#       wheels, for the prefetch Job (export, quantise, parity reference) and torch serving
#   docker build --target torch --build-arg TORCH_VARIANT=cu128 -t skill-compass-ml-cuda .
#       the same with CUDA wheels: GPU serving (deploy/kubernetes/overlays/gpu)
#
# No build step reaches a model hub: CLIP weights come from the prefetch Job (or
# `docker compose run prefetch`) into the CLIP cache volume, never into the image.
#
# Base image. The release builds pin it by digest: docker-bake.hcl (`docker buildx bake`)
# and deploy/docker-compose.yml (`docker compose build`) hand BuildKit a named context
# `python:3.11-slim-bookworm=docker-image://python:3.11-slim-bookworm@sha256:...`, which
# replaces this FROM, so a moved tag cannot slip in. Refresh the digest with
# scripts/pin-base-image.sh. The FROM itself names the tag, not a variable, so that any
# builder (a plain `docker build`, buildah against a local offline copy of the base, which
# has no registry digest) can build the file as it is.
FROM python:3.11-slim-bookworm AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# A numeric user (10001) so that Kubernetes' runAsNonRoot can verify it without a passwd
# lookup; the name `app` is for people reading `ps`.
RUN useradd --uid 10001 --user-group --home-dir /srv --no-create-home app
WORKDIR /srv
# Everything the service writes, in three directories the app user owns. With a read-only
# root filesystem (docker run --read-only), mount them as volumes (uploads: a tmpfs).
ENV UPLOAD_DIR=/srv/uploads \
    CAREER_MODEL_DIR=/srv/ml_models/career \
    CLIP_MODEL_CACHE_DIR=/srv/ml_models/clip
RUN mkdir -p "$UPLOAD_DIR" "$CAREER_MODEL_DIR" "$CLIP_MODEL_CACHE_DIR" \
    && chown -R 10001:10001 /srv

# ---------------------------------------------------------------- serving dependencies
FROM python AS serve-deps
COPY requirements-serve.txt requirements-otel.txt ./
RUN python -m venv /opt/venv && pip install -r requirements-serve.txt
# OpenTelemetry export (OTEL_EXPORTER_OTLP_ENDPOINT): --build-arg WITH_OTEL=1.
ARG WITH_OTEL=0
RUN if [ "$WITH_OTEL" = "1" ]; then pip install -r requirements-otel.txt; fi

# ------------------------------------------------------------------ torch dependencies
FROM serve-deps AS torch-deps
# torch and torchvision come from the PyTorch index of TORCH_VARIANT only (cpu, cu128,
# ...): with no other index and no pip configuration, an unreachable index fails the
# build instead of falling back to PyPI, whose default torch wheels carry CUDA (~5 GB).
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
COPY requirements.txt ./
RUN torch_pins=$(grep -E '^(torch|torchvision)==' requirements.txt) \
    && PIP_CONFIG_FILE=/dev/null pip install --index-url "$TORCH_INDEX_URL" $torch_pins \
    && pip install -r requirements.txt \
    && python -c "import sys, torch; cuda = torch.version.cuda; \
want_cuda = '$TORCH_VARIANT' != 'cpu'; \
print('torch', torch.__version__, 'cuda', cuda); \
sys.exit(0 if (cuda is not None) == want_cuda else 'torch build does not match TORCH_VARIANT=$TORCH_VARIANT')"

# ------------------------------------------------------------------------ torch target
FROM python AS torch
COPY --from=torch-deps /opt/venv /opt/venv
COPY --chown=10001:10001 app ./app
COPY --chown=10001:10001 ml_models ./ml_models
USER 10001:10001
EXPOSE 8000
CMD ["python", "-m", "app"]

# ------------------------------------------------------------- serve target (default)
FROM python AS serve
COPY --from=serve-deps /opt/venv /opt/venv
COPY --chown=10001:10001 app ./app
COPY --chown=10001:10001 ml_models ./ml_models
USER 10001:10001
# The default career model is built at image build time (seconds, no network), so
# containers serve career answers at once; CAREER_MODEL_DIR on a volume takes over.
RUN python -m app.train --if-missing
# Run with keys: docker run -e API_KEYS=<key>[,<key>...] ... Without them the service
# listens on the container's loopback only (unreachable through -p), and says so in its
# log; ALLOW_UNAUTHENTICATED_NETWORK=true opens it without keys, on purpose.
# CLIP needs the prefetched cache (ONNX exports) mounted at CLIP_MODEL_CACHE_DIR; without
# it the service serves the career model and /health says why CLIP is unavailable.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status != 200)"
CMD ["python", "-m", "app"]
