"""The parity gate: a candidate runtime may serve only if it reproduces torch fp32 on a
fixed probe set (every embedding within a cosine threshold, the same best tag for every
probe image that has a clear one)."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.services.clip.candidates import Trial
from app.services.clip.preprocess import ImageSpec, to_array
from app.services.clip.runtime import TorchModel

# Parity thresholds when CLIP_MIN_COSINE is 0 (automatic).
MIN_COSINE = {"fp32": 0.999, "bf16": 0.999, "fp16": 0.999, "int8": 0.995}
# A probe image has a clear best tag when torch fp32 puts it this far ahead of the
# runner-up in logits (cosine x the model's logit scale): a softmax probability ratio of
# e^0.5 = 1.65. Only those are held to "the same best tag": closer calls are ties that any
# rounding may flip (a random-init model has nothing but ties).
CLEAR_LEAD_LOGITS = 0.5

# The probe set: coloured shapes (which the test fixture model knows, as does real CLIP)
# and everyday captions. Every candidate must rank these tags as torch fp32 does.
PROBE_SHAPES = (
    ("red", "circle"),
    ("green", "square"),
    ("blue", "triangle"),
    ("yellow", "star"),
    ("purple", "circle"),
    ("orange", "triangle"),
    ("blue", "square"),
    ("green", "star"),
)
PROBE_TAGS = (
    *sorted({f"a {color} {shape}" for color, shape in PROBE_SHAPES}),
    "a photo of a dog",
    "a city at night",
    "a bowl of fruit",
    "a portrait of a person",
    "a page of handwritten notes",
    "a mountain landscape",
)
_RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
}


@dataclass
class Reference:
    """torch fp32 on the probe set: inputs and normalised outputs."""

    images: np.ndarray
    tokens: np.ndarray
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path) as data:
            return cls(**{name: data[name] for name in data.files})


def probe_images(
    spec: ImageSpec | None, transform: Callable[[Image.Image], Any] | None
) -> np.ndarray:
    """The probe images as model input rows, through the serving preprocessing."""
    rows = []
    for i, (color, shape) in enumerate(PROBE_SHAPES):
        side = 96 + 16 * i  # varied sizes, so resizing is part of what is probed
        image = Image.new("RGB", (side, side), (235, 232, 225))
        draw = ImageDraw.Draw(image)
        box = (side * 0.2, side * 0.2, side * 0.8, side * 0.8)
        fill = _RGB[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "triangle":
            draw.polygon(
                [(side * 0.5, side * 0.2), (side * 0.8, side * 0.8), (side * 0.2, side * 0.8)],
                fill=fill,
            )
        else:
            c, r = side / 2, side * 0.3
            points = [
                (
                    c + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5),
                    c - (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5),
                )
                for k in range(10)
            ]
            draw.polygon(points, fill=fill)
        if spec is not None:
            rows.append(to_array(image, spec))
        else:
            assert transform is not None
            rows.append(np.asarray(transform(image).numpy()))
    return np.stack(rows).astype(np.float32)


def probe_reference(source: TorchModel) -> Reference:
    """torch fp32 on the probe set: what every candidate is held to."""
    spec = ImageSpec.from_open_clip(source.meta.preprocess)
    images = probe_images(spec, source.preprocess)
    tokens = source.tokenize(list(PROBE_TAGS))
    fp32 = source.runtime("fp32")
    return Reference(images, tokens, fp32.encode_images([images]), fp32.encode_texts([tokens]))


def gate(trial: Trial, reference: Reference, threshold: float, logit_scale: float) -> None:
    """Run the probes through the trial's runtime and record whether it may serve: every
    embedding within `threshold` cosine of torch fp32's, and the same best tag for every
    probe image that has a clear one (CLEAR_LEAD_LOGITS)."""
    assert trial.runtime is not None
    images = _unit(trial.runtime.encode_images([reference.images]))
    texts = _unit(trial.runtime.encode_texts([reference.tokens]))
    cosine = min(
        float(np.min(np.sum(images * reference.image_embeddings, axis=1))),
        float(np.min(np.sum(texts * reference.text_embeddings, axis=1))),
    )
    expected = reference.image_embeddings @ reference.text_embeddings.T
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) * logit_scale >= CLEAR_LEAD_LOGITS
    picked = np.argmax(images @ texts.T, axis=1)
    differ = int(np.sum(picked[clear] != np.argmax(expected, axis=1)[clear]))
    trial.threshold = threshold
    trial.min_cosine = round(cosine, 6)
    trial.clear_probes = int(clear.sum())
    trial.same_best_tag = differ == 0
    trial.passed = cosine >= threshold and trial.same_best_tag
    if not trial.passed:
        why = [f"min cosine {cosine:.5f}" + (f" < {threshold}" if cosine < threshold else "")]
        if differ:
            why.append(f"another best tag on {differ} of {trial.clear_probes} clear probes")
        trial.error = "failed the parity gate: " + ", ".join(why)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
