"""Deterministic generator of coloured-shape images and captions ("a red circle") for the tiny CLIP fixture."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Saturated, well separated hues so that colour is unambiguous after bicubic resizing and on a
# light background (yellow is darkened a little so it still stands out from white).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (230, 200, 0),
    "purple": (140, 40, 180),
    "orange": (250, 130, 0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

# Placement ranges used when a parameter is not given explicitly. ``scale`` is the diameter of the
# shape's circumscribed circle as a fraction of the shorter image side.
SCALE_RANGE: tuple[float, float] = (0.35, 0.8)
ANGLE_RANGE: tuple[float, float] = (-20.0, 20.0)

# Shapes are drawn at this multiple of the output size and downsampled, which anti-aliases edges.
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Placement:
    """Where and how big a shape is drawn; ``center`` is in fractions of the image width/height."""

    center: tuple[float, float]
    scale: float
    angle: float = 0.0


def caption(color: str, shape: str) -> str:
    """Return the caption for a colour/shape pair, e.g. ``caption("red", "circle") == "a red circle"``."""
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; expected one of {sorted(COLORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    return f"a {color} {shape}"


def all_pairs() -> list[tuple[str, str]]:
    """Every (colour, shape) pair in a fixed order (colour-major), matching :func:`all_captions`."""
    return [(color, shape) for color in COLORS for shape in SHAPES]


def all_captions() -> list[str]:
    """Every caption in a fixed order (colour-major): ``["a red circle", "a red square", ...]``."""
    return [caption(color, shape) for color, shape in all_pairs()]


def random_placement(rng: np.random.Generator) -> Placement:
    """Sample a random scale/rotation and a centre that keeps the whole shape inside the image."""
    scale = float(rng.uniform(*SCALE_RANGE))
    angle = float(rng.uniform(*ANGLE_RANGE))
    # Keep the circumscribed circle inside the (square) image; centre coordinates are fractions.
    margin = scale / 2 + 0.02
    cx, cy = (float(v) for v in rng.uniform(margin, 1.0 - margin, size=2))
    return Placement(center=(cx, cy), scale=scale, angle=angle)


def render(
    color: str,
    shape: str,
    *,
    size: int | tuple[int, int] = 64,
    center: tuple[float, float] | None = None,
    scale: float | None = None,
    angle: float | None = None,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    background: str = "noise",
) -> Image.Image:
    """Render one RGB image of ``shape`` filled with ``color``.

    Placement parameters left as ``None`` are drawn from ``rng`` (or from a generator seeded with
    ``seed``, default 0), so the same arguments always give the same image. Pass ``center`` (fractions
    of width/height), ``scale`` (circumscribed diameter / shorter side) and ``angle`` (degrees)
    explicitly to render the same coloured shape shifted or resized.

    ``background`` is ``"noise"`` (light grey level with mild per-pixel noise, the training
    distribution) or ``"white"`` (plain white, no randomness).
    """
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; expected one of {sorted(COLORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    if background not in ("noise", "white"):
        raise ValueError(f"unknown background {background!r}; expected 'noise' or 'white'")
    if rng is None:
        rng = np.random.default_rng(0 if seed is None else seed)
    width, height = (size, size) if isinstance(size, int) else size

    # Always consume the random placement so that explicit overrides do not shift the noise stream.
    sampled = random_placement(rng)
    placement = Placement(
        center=sampled.center if center is None else center,
        scale=sampled.scale if scale is None else scale,
        angle=sampled.angle if angle is None else angle,
    )

    if background == "noise":
        level = float(rng.uniform(215.0, 255.0))
        noise = rng.normal(0.0, 6.0, size=(height, width, 3))
        base = np.clip(level + noise, 0, 255).astype(np.uint8)
    else:
        base = np.full((height, width, 3), 255, dtype=np.uint8)

    # Draw a binary mask at high resolution, downsample it to get soft (anti-aliased) edges, then
    # alpha-blend the colour so that the background noise is kept around the shape.
    big_w, big_h = width * _SUPERSAMPLE, height * _SUPERSAMPLE
    mask = Image.new("L", (big_w, big_h), 0)
    cx, cy = placement.center[0] * big_w, placement.center[1] * big_h
    radius = placement.scale * min(big_w, big_h) / 2
    _draw_shape(ImageDraw.Draw(mask), shape, cx, cy, radius, placement.angle)
    alpha = (
        np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32)[..., None]
        / 255.0
    )

    fill = np.asarray(COLORS[color], dtype=np.float32)
    pixels = base.astype(np.float32) * (1.0 - alpha) + fill * alpha
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


def _polygon(
    cx: float, cy: float, radii: list[float], angle_deg: float
) -> list[tuple[float, float]]:
    """Vertices at the given radii, evenly spaced in angle, starting straight up, rotated by angle."""
    n = len(radii)
    start = -math.pi / 2 + math.radians(angle_deg)
    return [
        (
            cx + r * math.cos(start + 2 * math.pi * i / n),
            cy + r * math.sin(start + 2 * math.pi * i / n),
        )
        for i, r in enumerate(radii)
    ]


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, angle: float
) -> None:
    """Fill ``shape`` inscribed in the circle (cx, cy, radius) on a mask."""
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    elif shape == "square":
        # Start at 45 degrees so an unrotated square is axis-aligned rather than a diamond.
        draw.polygon(_polygon(cx, cy, [radius] * 4, angle + 45.0), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, [radius] * 3, angle), fill=255)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, [radius, radius * 0.42] * 5, angle), fill=255)
    else:  # pragma: no cover - guarded by render()
        raise ValueError(f"unknown shape {shape!r}")
