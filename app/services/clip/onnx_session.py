"""CLIP served by ONNX Runtime on CPU: both exported towers as inference sessions.

Serving needs only onnxruntime and numpy: this module imports neither torch, open_clip nor
the exporter (`onnx_export.py`, which writes the files read here).
"""

from pathlib import Path
from typing import Any

import numpy as np

from app.services.clip.runtime import Backend, Precision

# The files of an ONNX export (fp32 or int8), one graph per tower.
IMAGE_FILE, TEXT_FILE = "image.onnx", "text.onnx"


class OnnxRuntime:
    """Both towers as ONNX Runtime CPU sessions."""

    backend: Backend = "onnx"

    def __init__(self, directory: Path, precision: Precision, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads would otherwise spin and take the cores that decode images.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.precision = precision
        self.directory = directory
        self._image: Any = ort.InferenceSession(
            str(directory / IMAGE_FILE), options, providers=providers
        )
        self._text: Any = ort.InferenceSession(
            str(directory / TEXT_FILE), options, providers=providers
        )

    @staticmethod
    def _batch(parts: list[Any], dtype: type) -> np.ndarray:
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(rows, dtype=dtype)

    def encode_images(self, parts: list[Any]) -> np.ndarray:
        out = self._image.run(None, {"pixels": self._batch(parts, np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def encode_texts(self, parts: list[Any]) -> np.ndarray:
        out = self._text.run(None, {"tokens": self._batch(parts, np.int64)})[0]
        return np.asarray(out, dtype=np.float32)

    def prepare_thread(self) -> None:
        pass  # ONNX Runtime keeps its own thread pool per session

    def close(self) -> None:
        self._image = self._text = None
