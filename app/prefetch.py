"""`python -m app.prefetch`: download the configured CLIP weights into CLIP_MODEL_CACHE_DIR.

Run where there is network (a Docker build, a CI cache step); the service then loads the
weights from the cache without network. It also loads the model the way the service
does, so the probe reference and the ONNX exports for CLIP_BACKEND/CLIP_PRECISION are
built into the cache too (then a start with CLIP_BACKEND=onnx imports no torch). Exits
non-zero, saying why, if the weights cannot be had.
"""

import sys

from app.config import get_settings
from app.services.clip.service import ClipService


def main() -> int:
    settings = get_settings().model_copy(update={"clip_enabled": True, "clip_device": "cpu"})
    service = ClipService(settings)
    service.load()
    if service.engine is None:
        print(f"could not fetch CLIP weights: {service.error}", file=sys.stderr)
        return 1
    print(
        f"CLIP {settings.clip_model_name} ({service.engine.meta.weights_tag}) is in "
        f"{settings.clip_model_cache_dir}, with the runtimes built from it; serving "
        f"{service.engine.runtime.backend} {service.engine.runtime.precision} here"
    )
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
