"""Every closed set of names the service uses, declared once.

They are `Literal` aliases, not `enum.Enum` classes: pydantic writes them into OpenAPI as
inline enums (the contract the Node client's types are generated from), and plain strings
read back from JSON files and settings need no conversion.
"""

from typing import Literal

Backend = Literal["torch", "onnx"]
"""What runs CLIP's forward passes."""

Precision = Literal["fp32", "bf16", "fp16", "int8"]
"""The number format of CLIP's weights and activations."""

DecodeMode = Literal["exact", "fast"]
"""How CLIP images are decoded and resampled (CLIP_PREPROCESS)."""

ModelState = Literal["loading", "loaded", "unavailable", "disabled"]
"""Where a served model is in its life cycle."""

JobState = Literal["queued", "running", "succeeded", "rejected", "failed"]
"""A retraining job's state."""

JobTrigger = Literal["upload", "store", "auto"]
"""What started a retraining job: an upload, the outcome store, or drift (auto)."""

Verdict = Literal["similar", "related", "different"]
"""How /clip/compare words a similarity."""

EncodingFormat = Literal["float", "base64"]
"""How embeddings are written: JSON floats, or base64 little-endian float32."""

RIASEC: tuple[str, ...] = (
    "realistic",
    "investigative",
    "artistic",
    "social",
    "enterprising",
    "conventional",
)
"""Holland's six interest dimensions, in the order of every model's interest features."""
