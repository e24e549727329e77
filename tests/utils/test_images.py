"""The image decoder on its own: modes, sizes, limits."""

import io

import numpy as np
import pytest
from PIL import Image

from app.core.exceptions import ImageTooLarge, InvalidImage
from app.utils.images import Region, decode_base64, load_image, open_image

pytestmark = pytest.mark.unit


def decode_image(data: bytes, *, max_pixels: int, min_side: int | None = None) -> Image.Image:
    return load_image(open_image(data, max_pixels=max_pixels), min_side=min_side).image


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_large_images_decode_reduced_to_the_needed_side() -> None:
    # PNG: reduced by an integer factor right after decoding, shorter side kept >= min_side.
    image = decode_image(
        encoded(Image.new("RGB", (3000, 1500), "red")), max_pixels=10**8, min_side=448
    )
    assert image.size == (1000, 500) and image.mode == "RGB"
    assert image.getpixel((10, 10)) == (255, 0, 0)
    # JPEG: decoded at a reduced scale (draft mode), never in full.
    jpeg = decode_image(
        encoded(Image.new("RGB", (4000, 3000), "blue"), "JPEG"), max_pixels=10**8, min_side=448
    )
    assert jpeg.size == (1000, 750)  # 1/4 scale: the largest that keeps 750 >= 448
    # Without min_side, or when already small, the image keeps its size.
    assert decode_image(encoded(Image.new("RGB", (640, 480))), max_pixels=10**8).size == (640, 480)
    small = encoded(Image.new("RGB", (640, 480)))
    assert decode_image(small, max_pixels=10**8, min_side=448).size == (640, 480)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "I;16", "P", "L", "CMYK"])
def test_every_mode_reduces_to_rgb(mode: str) -> None:
    source = Image.new("RGB", (1800, 900), (200, 40, 40)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = decode_image(encoded(source, fmt), max_pixels=10**8, min_side=100)
    assert image.mode == "RGB"
    assert 100 <= image.size[1] < 200 and image.size[0] == pytest.approx(2 * image.size[1], abs=1)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((600, 800), 32896, dtype=np.uint16))  # 128 * 257
    image = decode_image(encoded(grey), max_pixels=10**8, min_side=100)
    assert image.size == (133, 100)
    assert image.getpixel((5, 5)) == (128, 128, 128)


def test_exif_orientation_survives_reduction() -> None:
    stored = Image.new("RGB", (1200, 600), "white")
    stored.paste((255, 0, 0), (0, 0, 600, 600))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the red half goes on top
    out = io.BytesIO()
    stored.save(out, format="JPEG", exif=exif)
    image = decode_image(out.getvalue(), max_pixels=10**8, min_side=100)
    assert image.size[0] < image.size[1]  # portrait after rotation
    top, bottom = (
        image.getpixel((image.size[0] // 2, 5)),
        image.getpixel((image.size[0] // 2, image.size[1] - 5)),
    )
    assert top[0] > 200 and top[1] < 60  # red
    assert bottom == (255, 255, 255) or min(bottom) > 230


def test_transparency_goes_over_white() -> None:
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert decode_image(encoded(clear), max_pixels=100).getpixel((0, 0)) == (255, 255, 255)


def test_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(encoded(Image.new("L", (200, 200))), max_pixels=39_999)


def test_base64_forms() -> None:
    assert decode_base64("aGVsbG8", max_bytes=10, name="x") == b"hello"  # padding optional
    assert decode_base64("data:text/plain;base64,aGVs\nbG8=", max_bytes=10, name="x") == b"hello"
    with pytest.raises(InvalidImage):
        decode_base64("not*base64", max_bytes=100, name="x")
    with pytest.raises(ImageTooLarge):
        decode_base64("A" * 400, max_bytes=100, name="x")


def test_a_region_keeps_only_the_pixels_its_resampling_reads() -> None:
    """An extreme strip keeps the crop's neighbourhood, not the strip; the region is
    mapped through EXIF turns and reductions to the same picture area."""
    strip = encoded(Image.new("L", (2, 100_000), 128))
    wanted = Region((0.0, 49_999.0, 2.0, 50_001.0), (224, 224))
    decoded = load_image(open_image(strip, max_pixels=10**6), region=lambda w, h: wanted)
    assert decoded.full_size == (2, 100_000)
    assert decoded.image.mode == "RGB" and decoded.image.height < 40
    assert decoded.image.resize((224, 224), box=decoded.box).getpixel((5, 5)) == (128, 128, 128)

    # A marked square on a large picture, stored turned (EXIF 6) and decoded reduced: the
    # region around the mark, resampled, shows the mark where the upright picture has it.
    upright = Image.new("RGB", (3000, 2000), "white")
    upright.paste((255, 0, 0), (2000, 500, 2400, 900))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = encoded(upright.transpose(Image.Transpose.ROTATE_90), "PNG")
    out = io.BytesIO()
    Image.open(io.BytesIO(stored)).save(out, format="PNG", exif=exif)
    around = Region((1900.0, 400.0, 2500.0, 1000.0), (60, 60))
    decoded = load_image(
        open_image(out.getvalue(), max_pixels=10**8), min_side=500, region=lambda w, h: around
    )
    assert decoded.full_size == (3000, 2000)
    assert decoded.image.width < 3000 // 4 and decoded.image.height < 2000 // 4
    view = decoded.image.resize((60, 60), box=decoded.box)
    assert view.getpixel((30, 30)) == (255, 0, 0)
    assert view.getpixel((2, 2)) == (255, 255, 255)
