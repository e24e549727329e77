"""CLIP image preprocessing without torch: PIL resizes and crops, numpy normalises.

It reproduces open_clip's inference transform (torchvision `Resize` on the shorter side or
a squash, `CenterCrop`, `ToTensor`, `Normalize`) step for step: the same PIL resize call
with the same output size, the same crop offsets, the same float32 arithmetic. Being torch
free, it runs in the decode workers without contending for torch's threads.

Two decode sizes (`ImageSpec.decode`, CLIP_PREPROCESS): `exact` decodes large images down
to no less than 4x the input and 1024 px, so only large photos move at all; `fast` decodes
JPEGs at the smallest DCT scale (others reduced by the largest integer factor) that keeps
the shorter side >= `factor` x the input, the smallest factor measured to agree with
open_clip's transform for the model (`parity.fast_agreement`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from app.domain.enums import DecodeMode
from app.utils.images import Decoded, Region

MIN_DECODED_SIDE = 1024

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class ImageSpec:
    """What the model's image tower expects: size (height, width), resizing, statistics."""

    size: tuple[int, int]
    resize_mode: str
    resample: Image.Resampling
    mean: np.ndarray
    std: np.ndarray
    decode: DecodeMode = "exact"
    factor: int = 2  # `fast`: the shorter side is decoded to >= factor x the input
    # uint8 value -> normalised float32, per channel (3, 256): the normalisation as one
    # table look-up, the same float32 steps as `(v / 255 - mean) / std` computed once.
    table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255)
        table = (levels - self.mean.reshape(3, 1)) / self.std.reshape(3, 1)
        object.__setattr__(self, "table", np.ascontiguousarray(table, dtype=np.float32))

    @classmethod
    def from_open_clip(
        cls, cfg: dict[str, Any], decode: DecodeMode = "exact", factor: int = 2
    ) -> "ImageSpec | None":
        """The spec for open_clip's preprocess config, or None where this module cannot
        reproduce it exactly (then the caller uses open_clip's own transform)."""
        size = cfg.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mode = cfg.get("resize_mode", "shortest")
        resample = _RESAMPLING.get(str(cfg.get("interpolation", "bicubic")))
        if resample is None or mode not in ("shortest", "squash"):
            return None
        if mode == "shortest" and height != width:  # open_clip uses ResizeKeepRatio here
            return None
        return cls(
            size=(height, width),
            resize_mode=mode,
            resample=resample,
            mean=np.asarray(cfg["mean"], dtype=np.float32).reshape(3, 1, 1),
            std=np.asarray(cfg["std"], dtype=np.float32).reshape(3, 1, 1),
            decode=decode,
            factor=factor,
        )

    @property
    def min_side(self) -> int:
        """Shorter side to decode large images down to. `exact`: 4x the input and at least
        1024 px; images up to that size decode in full and preprocess exactly as open_clip
        does, larger ones decode reduced (JPEG draft, integer reduce), which moves the input
        by at most 0.015 (about 1/255 before normalisation) for ViT-B-32 on photos.
        `fast`: `factor` x the input (see the module doc)."""
        if self.decode == "fast":
            return self.factor * max(self.size)
        return max(4 * max(self.size), MIN_DECODED_SIDE)


def resized_size(width: int, height: int, spec: ImageSpec) -> tuple[int, int]:
    """(width, height) after the resize step, as torchvision computes it."""
    target_h, target_w = spec.size
    if spec.resize_mode == "squash":
        return target_w, target_h
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = target_h, int(target_h * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_box(width: int, height: int, spec: ImageSpec) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop offsets (Python's round, half to even, as there)."""
    crop_h, crop_w = spec.size
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    return left, top, left + crop_w, top + crop_h


def source_region(width: int, height: int, spec: ImageSpec) -> Region:
    """What open_clip's resize-then-crop keeps of a (width, height) picture, in the
    picture's own pixels: resampling this box straight to the input size gives the same
    pixels as resizing the whole picture and cropping, without making the pixels the crop
    throws away (a 2 x 100,000 strip would become 224 x 11,200,000 first)."""
    size = resized_size(width, height, spec)
    left, top, right, bottom = crop_box(*size, spec)
    sx, sy = width / size[0], height / size[1]
    return Region((left * sx, top * sy, right * sx, bottom * sy), (spec.size[1], spec.size[0]))


def region_of(spec: ImageSpec) -> Callable[[int, int], Region]:
    """`source_region` for `spec`, as `load_image` asks for it."""
    return partial(source_region, spec=spec)


def to_array(
    image: Image.Image | Decoded, spec: ImageSpec, out: np.ndarray | None = None
) -> np.ndarray:
    """An RGB image as the model's float32 input, shape (3, height, width), written into
    `out` if given (the decode worker's shared memory).

    A `Decoded` from `load_image(..., region=region_of(spec))` holds only the region and
    its box; a plain image is resampled from its `source_region`. Resampled once, straight to
    the input size, then each channel's uint8 pixels looked up in `spec.table`: one pass,
    one write of the floats, no intermediate copy."""
    if not isinstance(image, Decoded):
        image = Decoded(image, image.size, source_region(*image.size, spec).box)
    height, width = spec.size
    resized = image.image.resize((width, height), spec.resample, box=image.box)
    pixels = np.asarray(resized)  # (height, width, 3) uint8, a view of Pillow's buffer
    if out is None:
        out = np.empty((3, height, width), dtype=np.float32)
    for channel in range(3):
        np.take(spec.table[channel], pixels[:, :, channel], out=out[channel])
    return out
