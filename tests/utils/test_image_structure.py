"""The structure scan on its own: floods refused at the first limit, real files passed."""

import io
import time

import pytest
from PIL import Image

from app.core.exceptions import ImageTooComplex
from app.utils.image_structure import StructureLimits, check_structure
from benchmarks.hostile_files import (
    block_flood_gif,
    chunk_flood_png,
    marker_flood_jpeg,
    photo,
    scan_flood_jpeg,
)

pytestmark = pytest.mark.unit

LIMITS = StructureLimits(max_scans=64, max_chunks=1024)


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: scan_flood_jpeg(3000), "JPEG scans"),
        (lambda: marker_flood_jpeg(10 * 1024 * 1024), "JPEG markers"),
        (lambda: chunk_flood_png(850_000), "PNG chunks"),
        (lambda: block_flood_gif(1_000_000), "GIF blocks"),
    ],
)
def test_floods_are_refused_at_the_first_limit(make: object, what: str) -> None:
    data = make()  # type: ignore[operator]
    started = time.perf_counter()
    with pytest.raises(ImageTooComplex, match=what) as raised:
        check_structure(data, LIMITS, name="images.0")
    # Stopping at the limit: a few thousand steps, whatever the file holds after it.
    assert time.perf_counter() - started < 0.5
    assert raised.value.details[0]["field"] == "images.0"


def test_the_limits_are_the_settings_values() -> None:
    flood = scan_flood_jpeg(40)
    check_structure(flood, LIMITS)  # 40 + 10 scans <= 64
    with pytest.raises(ImageTooComplex, match="limit 32, IMAGE_MAX_SCANS"):
        check_structure(flood, StructureLimits(max_scans=32, max_chunks=1024))
    chunks = chunk_flood_png(100)
    check_structure(chunks, LIMITS)
    with pytest.raises(ImageTooComplex, match="IMAGE_MAX_CHUNKS"):
        check_structure(chunks, StructureLimits(max_scans=64, max_chunks=50))


def test_real_files_pass() -> None:
    picture = photo((800, 600), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    files = [
        saved(picture, "JPEG", quality=90, exif=exif),
        saved(picture, "JPEG", progressive=True, quality=95, subsampling=0),
        saved(picture.convert("CMYK"), "JPEG"),
        saved(picture, "PNG"),  # large: many IDAT chunks
        saved(picture.convert("P"), "PNG"),
        saved(picture.convert("P"), "GIF", comment=b"made by a camera"),
        saved(picture, "GIF", save_all=True, append_images=[picture.rotate(90)] * 3),
        saved(picture, "WEBP"),
        saved(picture, "TIFF"),
        b"not an image at all",
        b"\xff\xd8\xff\xe0",  # truncated: the decoder says so later
    ]
    for data in files:
        check_structure(data, LIMITS)
