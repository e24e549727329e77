"""CLIP through ONNX Runtime on CPU: exporting both towers, int8 quantisation, serving.

This module imports neither torch nor open_clip at the top: serving a cached export needs
only onnxruntime and numpy. Exporting (`export`) takes a loaded TorchModel.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from app.services.clip.runtime import Backend, Precision

if TYPE_CHECKING:
    from app.services.clip.runtime import TorchModel

logger = logging.getLogger(__name__)

IMAGE_FILE, TEXT_FILE = "image.onnx", "text.onnx"
OPSET = 17


def export(source: "TorchModel", out: Path) -> None:
    """Both towers as fp32 ONNX graphs (batch axis dynamic), L2 normalisation included."""
    import torch

    model = source.model
    size = source.meta.preprocess.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else size
    images = torch.zeros((2, 3, height, width), device=source.device)
    tokens = torch.from_numpy(source.tokenize(["a photo", "an export"])).to(source.device)

    class Tower(torch.nn.Module):
        def __init__(self, encode: str) -> None:
            super().__init__()
            self.model = model  # a submodule, so its weights export as initialisers
            self.encode = encode

        def forward(self, x: Any) -> Any:
            return getattr(self.model, self.encode)(x, normalize=True)

    for tower, example, name, file in (
        (Tower("encode_image"), images, "pixels", IMAGE_FILE),
        (Tower("encode_text"), tokens, "tokens", TEXT_FILE),
    ):
        with warnings.catch_warnings():
            # The TorchScript exporter: deprecated in favour of torch.export, which needs
            # onnxscript and fails on more models; this one handles open_clip's towers.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                tower,
                (example,),
                str(out / file),
                dynamo=False,
                input_names=[name],
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=OPSET,
            )


@dataclass(frozen=True)
class Int8Recipe:
    """One way of quantising the fp32 export to int8 (ONNX Runtime dynamic quantisation:
    weights quantised once, activations per batch at run time as uint8).

    Which recipes suit a CPU: ONNX Runtime's U8S8 kernels (uint8 activations, int8
    weights) on x86 without VNNI multiply with `vpmaddubsw`, which saturates the int16 sum
    of two products, and the embeddings drift (min cosine 0.981 on a ViT-B-32 on an
    AVX2-only EPYC). Its quantisation guide names the two ways out: 7-bit weights
    (`reduce_range`) or uint8 weights too (U8U8, another kernel). Per-channel scales
    recover part of the precision either loses."""

    name: str
    weight_type: Literal["QInt8", "QUInt8"]
    per_channel: bool = False
    reduce_range: bool = False
    needs_vnni: bool = False  # saturates without VNNI (see above)

    @property
    def kind(self) -> str:
        """The artifact kind; plain U8S8 keeps the name it had before recipes existed."""
        return "onnx-int8" if self.name == "u8s8" else f"onnx-int8-{self.name}"

    def describe(self) -> str:
        weights = "int8" if self.weight_type == "QInt8" else "uint8"
        return (
            f"dynamic; weights {weights}"
            + (" (7-bit range)" if self.reduce_range else "")
            + (", per output channel" if self.per_channel else ", per tensor")
            + "; activations uint8 per batch"
        )


INT8_RECIPES = {
    recipe.name: recipe
    for recipe in (
        Int8Recipe("u8s8", "QInt8", needs_vnni=True),
        Int8Recipe("u8s8-per-channel", "QInt8", per_channel=True, needs_vnni=True),
        Int8Recipe("u8s8-reduce-range", "QInt8", reduce_range=True),
        Int8Recipe("u8u8", "QUInt8"),
        Int8Recipe("u8u8-per-channel", "QUInt8", per_channel=True),
    )
}


def quantize_int8(source: Path, out: Path, recipe: Int8Recipe = INT8_RECIPES["u8s8"]) -> None:
    """Dynamic int8 quantisation of the fp32 export in `source` by `recipe`: one byte per
    weight instead of four, so the matrix products move far less memory; whether that wins
    on this CPU is for the timing in selection to decide."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for file in (IMAGE_FILE, TEXT_FILE):
        quantize_dynamic(
            source / file,
            out / file,
            weight_type=QuantType[recipe.weight_type],
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
        )


class _QuantiserAdvice(logging.Filter):
    """The quantiser logs advice about model pre-processing on the root logger at every
    call; it is not about this service and would read as a problem in its logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or "quantization" not in record.pathname


logging.getLogger().addFilter(_QuantiserAdvice())


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
