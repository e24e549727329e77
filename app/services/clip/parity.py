"""The parity gate: a candidate runtime may serve only if it reproduces torch fp32 on a
fixed probe set (every embedding within a cosine threshold, the same best tag for every
probe image that has a clear one)."""

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.services.clip.candidates import Trial
from app.services.clip.preprocess import ImageSpec, region_of, to_array
from app.services.clip.runtime import TorchModel
from app.utils.images import load_image, open_image

# CLIP_PREPROCESS=auto serves the fast decode only where it agrees this well with
# open_clip's transform (lowest embedding cosine over the agreement set), with the same
# best tag for every image.
FAST_MIN_COSINE = 0.999
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


def _shape(color: str, shape: str, side: int) -> Image.Image:
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
    return image


def photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like picture (smooth gradients plus sensor-like noise), width x height."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [np.sin(x / (40 + 10 * c) + seed) * np.cos(y / (30 + 7 * c)) for c in range(3)], -1
    )
    noise = rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(127 + 90 * base + noise, 0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out.getvalue()


def agreement_set() -> list[bytes]:
    """What the fast decode is checked on, as files: the probe shapes at small and large
    sizes (JPEG and PNG), and photo-like pictures from 640x480 to 2600x2100, portrait and a
    1:6 strip among them (they are the images the reduced decode changes most)."""
    files = []
    for i, (color, shape) in enumerate(PROBE_SHAPES):
        files.append(_encoded(_shape(color, shape, 96 + 16 * i), "JPEG"))
        files.append(_encoded(_shape(color, shape, 700 + 130 * i), "JPEG" if i % 2 else "PNG"))
    sizes = [(640, 480), (480, 640), (1920, 1080), (300, 1800), (2600, 2100)]
    for seed, size in enumerate(sizes):
        files.append(_encoded(photo(seed, size), "PNG" if seed == 4 else "JPEG"))
    return files


# Decode factors CLIP_PREPROCESS=fast may use (the shorter side kept >= factor x the input),
# smallest first: the smallest that agrees with open_clip's transform for the model serves.
FAST_FACTORS = (1, 2, 4)


@dataclass(frozen=True)
class FastAgreement:
    """CLIP_PREPROCESS=fast at `factor` against open_clip's transform on `agreement_set`."""

    factor: int
    images: int
    min_cosine: float
    same_answers: bool  # the same best tag (of PROBE_TAGS) for every image

    @property
    def agrees(self) -> bool:
        return self.min_cosine >= FAST_MIN_COSINE and self.same_answers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FastAgreement":
        return cls(**{"factor": 2, **data})  # recorded before factors varied: it was 2


def fast_agreement(source: TorchModel) -> FastAgreement | None:
    """The smallest decode factor (FAST_FACTORS) whose fast decode follows open_clip's
    transform for this model (torch fp32 embeddings: cosine >= FAST_MIN_COSINE and the same
    best tags), with its numbers; the largest factor's if none does. A model's input size
    decides it: at 1x, the fixture's 32 px input lets the JPEG decoder drop to 1/8 scale,
    which moved its photo embeddings to 0.990, where ViT-B-32's 224 px stayed above 0.9999.
    None where ImageSpec cannot reproduce the transform at all."""
    if ImageSpec.from_open_clip(source.meta.preprocess) is None:
        return None
    files = agreement_set()
    reference = []
    for data in files:
        with Image.open(io.BytesIO(data)) as full:
            reference.append(np.asarray(source.preprocess(full.convert("RGB")).numpy()))
    fp32 = source.runtime("fp32")
    theirs = _unit(fp32.encode_images([np.stack(reference)]))
    texts = fp32.encode_texts([source.tokenize(list(PROBE_TAGS))])
    answers = np.argmax(theirs @ texts.T, axis=1)
    agreement = None
    for factor in FAST_FACTORS:
        spec = ImageSpec.from_open_clip(source.meta.preprocess, decode="fast", factor=factor)
        assert spec is not None
        fast = []
        for data in files:
            image = open_image(data, max_pixels=10**8)
            decoded = load_image(image, min_side=spec.min_side, region=region_of(spec))
            fast.append(to_array(decoded, spec))
        ours = _unit(fp32.encode_images([np.stack(fast)]))
        same = np.array_equal(np.argmax(ours @ texts.T, axis=1), answers)
        cosine = float(np.min(np.sum(ours * theirs, axis=1)))
        agreement = FastAgreement(factor, len(files), round(cosine, 6), bool(same))
        if agreement.agrees:
            break
    return agreement


def probe_images(
    spec: ImageSpec | None, transform: Callable[[Image.Image], Any] | None
) -> np.ndarray:
    """The probe images as model input rows, through the serving preprocessing."""
    rows = []
    for i, (color, shape) in enumerate(PROBE_SHAPES):
        image = _shape(color, shape, 96 + 16 * i)  # varied sizes: resizing is probed too
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
