"""`python -m app.prefetch`: download the configured CLIP weights into CLIP_MODEL_CACHE_DIR.

Run where there is network (a Docker build, a CI cache step); the service then loads the
weights from the cache without network. Exits non-zero, saying why, if they cannot be had.
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
        f"CLIP {settings.clip_model_name} ({service.engine.runtime.weights_tag}) is in "
        f"{settings.clip_model_cache_dir}"
    )
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
