"""The decode pool on its own, in a fresh interpreter: what a worker hands back without an
ImageSpec, and a clean shutdown (the pool's shared memory unlinked once, with nothing for
multiprocessing's resource tracker to complain about)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from app.services.clip.decode_pool import DecodeBudget, DecodePool
    from app.services.clip.preprocess import ImageSpec
    from app.utils.image_structure import StructureLimits
    from benchmarks.common import photo_jpeg

    if __name__ == "__main__":
        budget = DecodeBudget(10**6, 10**7, StructureLimits(64, 1024), 5.0, 256)
        spec = ImageSpec.from_open_clip(
            {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        )
        jpeg = photo_jpeg(1, (64, 48))
        plain = DecodePool(1, None, budget)  # open_clip's transform runs in the server
        image = plain.prepare(jpeg, "image")
        plain._workers[0].restart()
        again = plain.prepare(jpeg, "image")
        plain.close()
        shaped = DecodePool(2, spec, budget)
        pixels = shaped.prepare(jpeg, "image")
        shaped.close()
        print(json.dumps({
            "image": [image.mode, *image.size], "again": [again.mode, *again.size],
            "pixels": list(pixels.shape), "finite": bool(np.isfinite(pixels).all()),
        }))
    """
)


def test_a_pool_without_a_spec_returns_images_and_shuts_down_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        '{"image": ["RGB", 64, 48], "again": ["RGB", 64, 48], '
        '"pixels": [3, 32, 32], "finite": true}'
    )
    # A worker that unregistered the segment from the tracker it shares with the parent
    # made the parent's unlink print a KeyError traceback; a lost segment prints "leaked".
    assert "Traceback" not in done.stderr and "leaked" not in done.stderr, done.stderr
