"""CLIP image preprocessing without torch: PIL resizes and crops, numpy normalises.

It reproduces open_clip's inference transform (torchvision `Resize` on the shorter side or
a squash, `CenterCrop`, `ToTensor`, `Normalize`) step for step: the same PIL resize call
with the same output size, the same crop offsets, the same float32 arithmetic. Being torch
free, it runs in a thread pool beside inference without contending for torch's threads.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.utils.images import Decoded

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

    @classmethod
    def from_open_clip(cls, cfg: dict[str, Any]) -> "ImageSpec | None":
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
        )

    @property
    def min_side(self) -> int:
        """Shorter side to decode large images down to: 4x the input and at least 1024 px.

        Images up to that size decode in full and preprocess exactly as open_clip does;
        larger ones decode reduced (JPEG draft, integer reduce), which moves the input by
        at most 0.015 (about 1/255 before normalisation) for ViT-B-32 on photos."""
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


def to_array(image: Image.Image | Decoded, spec: ImageSpec) -> np.ndarray:
    """An RGB image as the model's float32 input, shape (3, height, width).

    For a reduced decode the resize target comes from the full size, as open_clip computes
    it, and the source box is the exact full-size area (a partial last row or column of the
    reduction counts for what it covers)."""
    if isinstance(image, Decoded):
        width, height = image.full_size
        box, image = image.box, image.image
    else:
        width, height = image.size
        box = (0.0, 0.0, float(width), float(height))
    size = resized_size(width, height, spec)
    resized = image.resize(size, spec.resample, box=box)
    cropped = resized.crop(crop_box(*size, spec))
    pixels = np.asarray(cropped, dtype=np.float32).transpose(2, 0, 1)
    pixels /= np.float32(255)
    pixels -= spec.mean
    pixels /= spec.std
    return np.ascontiguousarray(pixels)
