"""Embedding vectors as they are written into answers."""

import base64
from typing import Any, Literal

import numpy as np


def encode_rows(vectors: np.ndarray, encoding_format: Literal["float", "base64"]) -> list[Any]:
    """Each row as a float32 array (orjson writes its numbers in their shortest round-trip
    form) or, with `base64`, as its little-endian float32 bytes in base64, which is what
    OpenAI's clients decode."""
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return list(rows)
