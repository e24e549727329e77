"""CLIP exported for ONNX Runtime: both towers as fp32 graphs, and int8 quantisations of
them by the recipes in `candidates.py`. Run once per checkpoint by `artifact_builds.py`
when the artifact cache lacks an export; serving (`onnx_session.py`) never imports it.

Exporting takes a loaded TorchModel and imports torch inside `export`; quantising imports
onnxruntime's quantiser inside `quantize_int8`.
"""

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.services.clip.candidates import INT8_RECIPES, Int8Recipe
from app.services.clip.onnx_session import IMAGE_FILE, TEXT_FILE

if TYPE_CHECKING:
    from app.services.clip.runtime import TorchModel

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
