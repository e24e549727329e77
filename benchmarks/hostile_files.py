"""Crafted hostile uploads, one per class the service must bound, made from scratch.

Shared by `benchmarks.hostile` (the table of their cost against the budget) and the tests
of the same classes. Every file is small on the wire and within the byte and pixel limits;
what makes it hostile is its shape or structure.
"""

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def extreme_png(width: int, height: int) -> bytes:
    """A grey strip: 2 x 100,000 is 371 bytes, and resized whole to 224 px on its short
    side it would be 224 x 11,200,000."""
    return png(Image.new("L", (width, height), 128))


def rgba_bomb_png(size: tuple[int, int] = (7745, 5164)) -> bytes:
    """40 MP of RGBA in about 170 KB: the most a legal PNG asks of the decoder."""
    image = Image.new("RGBA", size, (200, 30, 30, 128))
    image.paste((30, 30, 200, 255), (1000, 1000, 3000, 3000))
    return png(image)


def _segments(jpeg: bytes) -> list[tuple[int, int]]:
    """(start, end) of each marker segment of a JPEG, entropy-coded data included with
    the scan before it."""
    spans, pos = [], 2
    while pos < len(jpeg):
        marker = jpeg[pos + 1]
        if marker == 0xD9:
            break
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # scan data runs to the next marker that is not RST or stuffing
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        spans.append((pos, end))
        pos = end
    return spans


def photo(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """Smooth colour noise: compresses like a photo, decodes like one."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def scan_flood_jpeg(scans: int = 3000, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A flat progressive JPEG whose last scan (26 bytes: one run of empty blocks) is
    repeated `scans` times: libjpeg decodes every copy again over the whole image
    (warning 'bogus progression' and going on)."""
    out = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(out, format="JPEG", progressive=True, quality=90)
    jpeg = out.getvalue()
    spans = _segments(jpeg)
    last = next(span for span in reversed(spans) if jpeg[span[0] + 1] == 0xDA)
    body = jpeg[: last[1]]
    return body + jpeg[last[0] : last[1]] * scans + b"\xff\xd9"


def marker_flood_jpeg(total_bytes: int = 10 * 1024 * 1024) -> bytes:
    """A real JPEG behind millions of empty APP1 markers: Pillow keeps every one."""
    out = io.BytesIO()
    photo((64, 64)).save(out, format="JPEG")
    jpeg = out.getvalue()
    count = (total_bytes - len(jpeg)) // 4
    return b"\xff\xd8" + b"\xff\xe1\x00\x02" * count + jpeg[2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def chunk_flood_png(chunks: int = 850_000) -> bytes:
    """A 1 x 1 PNG with `chunks` empty private ancillary chunks before its pixels:
    Pillow's header parser walks each one in Python."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    empty = _chunk(b"scAL", b"")
    pixels = _chunk(b"IDAT", zlib.compress(b"\x00\x80"))
    return b"\x89PNG\r\n\x1a\n" + header + empty * chunks + pixels + _chunk(b"IEND", b"")


def block_flood_gif(blocks: int = 1_000_000) -> bytes:
    """A 1 x 1 GIF behind one comment extension of `blocks` one-byte sub-blocks."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    comment = b"\x21\xfe" + b"\x01x" * blocks + b"\x00"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + comment + image + b"\x3b"


def base64_body(images: list[bytes]) -> bytes:
    """The JSON body of `/api/v1/clip/json/embed/image` for `images`."""
    items = b'","'.join(base64.b64encode(image) for image in images)
    return b'{"images":["' + items + b'"]}'
