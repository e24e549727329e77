"""The one image decoder: bytes in, an upright RGB image out, or a precise error.

Decoding goes by content, never by file name or declared type. It has two steps so that a
caller can admit work between them: `open_image` reads only the header and checks the byte
and pixel limits (a decompression bomb costs nothing), `load_image` decodes straight to
about the size the caller needs.
"""

import base64
import binascii
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import (  # noqa: F401  (registering the plugins of FORMATS)
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

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


# The formats the service accepts: Pillow decodes about 40 more (TGA, PCX, SGI, ICO, DDS,
# QOI, XBM, ...), each one more parser exposed to hostile files. (The multi-picture JPEGs
# many cameras write open through the JPEG plugin, as MPO.)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


def looks_like_image(data: bytes) -> bool:
    return any(data[offset : offset + len(sig)] == sig for offset, sig in _SIGNATURES)


def open_image(data: bytes, *, max_pixels: int, name: str = "image") -> Image.Image:
    """Read only the header of `data`: the format and the declared size, checked against
    `max_pixels`. No pixel is decoded, so this is cheap whatever the file claims to hold."""
    if not data:
        raise InvalidImage(f"{name} is empty.", details=[{"field": name}])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
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
    except MemoryError:  # out of budget, not corrupt: the caller decides
        raise
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise InvalidImage(f"{name} is corrupt or truncated.", details=[{"field": name}]) from exc

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {width}x{height} pixels; the limit is {max_pixels} pixels.",
            details=[{"field": name, "width": width, "height": height, "max_pixels": max_pixels}],
        )
    return image


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Region:
    """The part of the upright, full-size picture that a caller will resample (`box`, in
    full-size pixels, fractions allowed) and the (width, height) it will become."""

    box: Box
    size: tuple[int, int]


@dataclass(frozen=True)
class Decoded:
    """An upright RGB image, the picture's (width, height) at full resolution, upright, and
    `box`: the area of `image` to resample.

    Without a region, `box` covers the whole picture: a reduced image (see `load_image`)
    rounds its size up, so its last row and column may stand for fewer full-size pixels,
    and `box` excludes that excess. With a region, `image` is only the part of the picture
    around it and `box` is the region in that part's pixels. Either way, resampling `box`
    gives what resampling the full-size picture would give.
    """

    image: Image.Image
    full_size: tuple[int, int]
    box: Box


def load_image(
    image: Image.Image,
    *,
    min_side: int | None = None,
    region: Callable[[int, int], Region] | None = None,
    name: str = "image",
) -> Decoded:
    """Decode an image from `open_image` into upright RGB (first frame if animated).

    With `min_side`, the result is shrunk as early as Pillow allows while its shorter side
    stays >= `min_side`: JPEGs decode at 1/2, 1/4 or 1/8 scale (draft mode), anything else
    is reduced by an integer factor right after decoding, before any mode conversion. So the
    only full-size bitmap is the decoder's own output, and no full-size copy is ever made.

    With `region` (called with the upright full size), only the part of the decoded image
    that resampling the region reads is kept, before it is turned upright or converted to
    RGB: a 2 x 100,000 strip costs what its crop needs, not a conversion of the whole strip.
    """
    width, height = image.size
    try:
        if min_side and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        orientation = image.getexif().get(_ORIENTATION)
        method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
        image.seek(0)
        image.load()
        scale = max(1, round(width / image.width))  # JPEG draft: 1, 2, 4 or 8
        factor = min(image.size) // min_side if min_side else 1
        if factor > 1:
            image = _reduce(image, factor)
            scale *= factor
        upright = (height, width) if method in _QUARTER_TURNS else (width, height)
        white = _white_level(image)
        if region is None:
            box: Box = (
                0.0,
                0.0,
                min(width / scale, image.width),
                min(height / scale, image.height),
            )
        else:
            wanted = region(*upright)
            box = wanted.box
            if method is not None:  # from the upright picture back to the stored one
                box = _transpose_box(box, upright, _INVERSE[method])
            image, box = _cut(image, tuple(v / scale for v in box), wanted.size, method)  # type: ignore[arg-type]
        if method is not None:
            box = _transpose_box(box, image.size, method)
            image = image.transpose(method)
        return Decoded(_to_rgb(image, white), upright, box)
    except MemoryError:  # out of budget, not corrupt: the caller decides
        raise
    except Exception as exc:
        raise InvalidImage(f"{name} is corrupt or truncated.", details=[{"field": name}]) from exc


# The widest resampling filter Pillow has (Lanczos) reads 3 source pixels either side of
# each output pixel's centre, times the shrink factor when shrinking.
_FILTER_REACH = 3


def _cut(
    image: Image.Image, box: Box, size: tuple[int, int], method: Image.Transpose | None
) -> tuple[Image.Image, Box]:
    """The part of `image` that resampling `box` to `size` reads, and `box` within it.

    The margin covers the filter's whole reach, so every output pixel sees exactly the
    source pixels it would see in the whole image (at the image's own edges Pillow clamps
    the same way in both)."""
    out_w, out_h = (size[1], size[0]) if method in _QUARTER_TURNS else size
    reach_x = _FILTER_REACH * max(1.0, (box[2] - box[0]) / out_w) + 2
    reach_y = _FILTER_REACH * max(1.0, (box[3] - box[1]) / out_h) + 2
    left = max(0, int(box[0] - reach_x))
    top = max(0, int(box[1] - reach_y))
    right = min(image.width, int(box[2] + reach_x) + 1)
    bottom = min(image.height, int(box[3] + reach_y) + 1)
    # Clamped to the part: a reduction that rounds the size down (palettes, 16-bit) leaves
    # the box up to a pixel beyond the reduced image.
    inner = (
        max(0.0, box[0] - left),
        max(0.0, box[1] - top),
        min(float(right - left), box[2] - left),
        min(float(bottom - top), box[3] - top),
    )
    if (left, top, right, bottom) == (0, 0, image.width, image.height):
        return image, inner
    return image.crop((left, top, right, bottom)), inner


# EXIF orientation tag and the transposition that displays each value upright (as in
# ImageOps.exif_transpose, applied here to the reduced image instead of the full one).
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_QUARTER_TURNS = {_TRANSPOSE[5], _TRANSPOSE[6], _TRANSPOSE[7], _TRANSPOSE[8]}
# Each transposition undone: the quarter turns swap, the flips and diagonals undo themselves.
_INVERSE = {
    **{method: method for method in _TRANSPOSE.values()},
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}


def _transpose_box(box: Box, size: tuple[int, int], method: Image.Transpose) -> Box:
    """Where `box` lies after `image.transpose(method)` of an image of `size`."""
    w, h = size
    T = Image.Transpose
    point = {
        T.FLIP_LEFT_RIGHT: lambda x, y: (w - x, y),
        T.FLIP_TOP_BOTTOM: lambda x, y: (x, h - y),
        T.ROTATE_180: lambda x, y: (w - x, h - y),
        T.ROTATE_90: lambda x, y: (y, w - x),
        T.ROTATE_270: lambda x, y: (h - y, x),
        T.TRANSPOSE: lambda x, y: (y, x),
        T.TRANSVERSE: lambda x, y: (h - y, w - x),
    }[method]
    (ax, ay), (bx, by) = point(box[0], box[1]), point(box[2], box[3])
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBa", "La", "CMYK", "I", "F", "YCbCr"}


# Pillow reduces images with alpha premultiplied, through a converted copy of the whole
# image: a 40 MP RGBA PNG would need its 160 MB twice. Bands of this many output rows
# keep the copy small; box averages never cross a band, so the result is the same.
_BAND_ROWS = 32


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """Shrink by an integer factor, averaging boxes of pixels. Palette and 1-bit images are
    converted band by band first: picking one pixel in `factor` squared aliases (a 1500 px
    palette picture at a 23x reduction moved the fixture model's embedding by 0.001)."""
    if image.mode in ("LA", "RGBA"):
        return _banded(image, factor, image.mode)
    if image.mode in ("P", "PA", "1"):
        transparent = image.mode == "PA" or "transparency" in image.info
        return _banded(image, factor, "RGBA" if transparent else "RGB")
    if image.mode in _REDUCIBLE:
        return image.reduce(factor)
    # I;16 and friends have no reduce(); resize's box filter averages the same way.
    width, height = image.size
    return image.resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX)


def _banded(image: Image.Image, factor: int, mode: str) -> Image.Image:
    """`image` in `mode`, reduced by `factor`, converting and reducing _BAND_ROWS x factor
    rows at a time, so no full-size copy is ever made."""
    out = Image.new(mode, (-(-image.width // factor), -(-image.height // factor)))
    step = _BAND_ROWS * factor
    for top in range(0, image.height, step):
        band = image.crop((0, top, image.width, min(image.height, top + step)))
        if band.mode != mode:
            band = band.convert(mode)
        out.paste(band.reduce(factor), (0, top // factor))
    return out


_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _white_level(image: Image.Image) -> float:
    """The value that stands for white: 65535 for 16-bit images and for 32-bit ones that
    exceed 255 anywhere (judged on the whole image, before any part is cut out)."""
    if image.mode.startswith("I;16"):
        return 65535.0
    if image.mode in ("I", "F"):
        low_high = image.getextrema()
        return 65535.0 if float(low_high[1]) > 255 else 255.0  # type: ignore[index, arg-type]
    return 255.0


def _to_rgb(image: Image.Image, white: float) -> Image.Image:
    """Any mode to RGB; transparency over white, high bit depths scaled, not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH:
        pixels = np.asarray(image, dtype=np.float32)
        scaled = np.clip(pixels * np.float32(255.0 / white), 0, 255).astype(np.uint8)
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


def take_each(values: list[str]) -> Iterator[tuple[int, str]]:
    """(index, value) of each string, removed from the list as it is handed out, so the
    caller holds each string only while it decodes it."""
    for index in range(len(values)):
        value, values[index] = values[index], ""
        yield index, value
