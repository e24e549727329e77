"""Transitional: the ONNX session wrapper moved to `onnx_session.py` (and export and
quantisation to `onnx_export.py`). Kept only for `selection.py`'s import; delete it once
that imports `onnx_session`."""

from app.services.clip.onnx_session import OnnxRuntime

__all__ = ["OnnxRuntime"]
