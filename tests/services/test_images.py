"""The image decoder on its own: modes, sizes, limits."""

import io

import pytest
from PIL import Image

from app.core.exceptions import ImageTooLarge, InvalidImage
from app.utils.images import decode_base64, decode_image


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_large_images_are_shrunk_after_decoding() -> None:
    image = decode_image(
        encoded(Image.new("RGB", (3000, 1500), "red")), max_pixels=10**8, max_side=1024
    )
    assert image.size == (1024, 512) and image.mode == "RGB"


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
