"""The one image decoder: bytes in, an upright RGB image out, or a precise error.

Decoding goes by content, never by file name or declared type. Limits are checked before
pixels are decoded, so a small file that expands to a huge bitmap (a decompression bomb)
costs nothing.
"""

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.core.exceptions import ImageTooLarge, InvalidImage, UnsupportedMediaType

# Leading bytes of the formats we recognise as "meant to be an image": a file that starts
# like one but does not decode is corrupt (400); anything else is not an image (415).
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (8, b"WEBP"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF, little-endian
    (0, b"MM\x00*"),  # TIFF, big-endian
)


def looks_like_image(data: bytes) -> bool:
    return any(data[offset : offset + len(sig)] == sig for offset, sig in _SIGNATURES)


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    draft_size: int | None = None,
    max_side: int | None = None,
    name: str = "image",
) -> Image.Image:
    """Decode `data` into an RGB image with EXIF orientation applied (first frame if animated).

    `draft_size` lets JPEG decode at a reduced scale; `max_side` shrinks anything larger
    after decoding. Both stay well above the model's input size.
    """
    if not data:
        raise InvalidImage(f"{name} is empty.", details=[{"field": name}])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        if isinstance(exc, UnidentifiedImageError) and not looks_like_image(data):
            raise UnsupportedMediaType(
                f"{name} is not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF).",
                details=[{"field": name}],
            ) from exc
        if not isinstance(exc, UnidentifiedImageError):
            raise ImageTooLarge(f"{name} has too many pixels.", details=[{"field": name}]) from exc
        raise InvalidImage(f"{name} is corrupt or truncated.", details=[{"field": name}]) from exc
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise InvalidImage(f"{name} is corrupt or truncated.", details=[{"field": name}]) from exc

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {width}x{height} pixels; the limit is {max_pixels} pixels.",
            details=[{"field": name, "width": width, "height": height, "max_pixels": max_pixels}],
        )
    try:
        if draft_size and image.format == "JPEG":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: a 12 MP photo for a
            # 224 px model input need not be decoded in full.
            image.draft("RGB", (draft_size, draft_size))
        image.seek(0)
        image.load()
        upright: Image.Image = ImageOps.exif_transpose(image) or image
        rgb = _to_rgb(upright)
        if max_side and max(rgb.size) > max_side:
            # Keep what a request holds small: a 40 MP photo would be 120 MB of RGB.
            rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return rgb
    except Exception as exc:
        raise InvalidImage(f"{name} is corrupt or truncated.", details=[{"field": name}]) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparency over white, high bit depths scaled, not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        scaled = np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_base64(value: str, *, max_bytes: int, name: str) -> bytes:
    """Bytes of a plain base64 string or a data URI; the declared media type is ignored."""
    text = value.strip()
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    text = "".join(text.split())
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageTooLarge(
            f"{name} is larger than the {max_bytes}-byte limit.",
            details=[{"field": name, "max_bytes": max_bytes}],
        )
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{name} is not valid base64.", details=[{"field": name}]) from exc
