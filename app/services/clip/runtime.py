"""What serves a CLIP forward pass: the Runtime interface, and open_clip's torch model.

A runtime turns preprocessed image rows and token ids into L2-normalised embeddings. The
engine (batching, preprocessing, caching) does not care which one it has: torch in fp32,
bf16 or fp16 (here), or ONNX Runtime in fp32 or int8 (`onnx_session.py`).
`selection.py` decides which one serves.
"""

import contextlib
import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.config import Settings
from app.domain.enums import Backend, Precision
from app.services.clip.weights import Weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipMeta:
    """What the service needs to know about a model, whatever runs it: stored with the
    probe reference (`selection.py`) so a torch-free start has it without open_clip."""

    model: str
    weights_tag: str
    dimension: int
    logit_scale: float
    preprocess: dict[str, Any]  # open_clip's preprocess config (size, mean, std, ...)
    tokenizer: dict[str, Any] | None  # ClipTokenizer spec; None: only open_clip's will do
    # CLIP_PREPROCESS=fast against open_clip's transform, measured with torch once and kept
    # with the reference (parity.FastAgreement.to_dict); None: not measured.
    fast_agreement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipMeta":
        return cls(**data)


class Runtime(Protocol):
    """One way of running both towers. `parts` are row blocks (numpy arrays, or tensors on
    the device) that make one batch together."""

    backend: Backend
    precision: Precision

    def encode_images(self, parts: list[Any]) -> np.ndarray:
        """Preprocessed images (n, 3, h, w) to (n, dim) float32, L2-normalised."""
        ...

    def encode_texts(self, parts: list[Any]) -> np.ndarray:
        """Token ids (n, context) to (n, dim) float32, L2-normalised."""
        ...

    def prepare_thread(self) -> None:
        """Called once on the thread that will run every forward pass."""
        ...

    def close(self) -> None: ...


def configure_torch(threads: int) -> None:
    """Torch settings for inference, made by the service just before torch is first needed
    (a start that serves ONNX from the cache never imports torch). Flushing denormals sets
    the calling thread's floating-point state: the service calls this on its load thread."""
    import torch

    torch.set_num_threads(threads)
    # Denormal floats slow CPU inference many-fold (seen with random-init weights) and
    # carry no meaning for embeddings.
    torch.set_flush_denormal(True)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # may be set only once per process
            torch.set_num_interop_threads(1)


class TorchModel:
    """An open_clip model loaded in fp32 on one device: the reference every other runtime
    is checked against, and the source of the ONNX exports."""

    def __init__(self, settings: Settings, device: str, weights: Weights) -> None:
        import open_clip
        import torch

        s = settings
        register_model_config(s)
        options = {k: v for k, v in weights.options.items() if v is not None}
        model, _, preprocess = open_clip.create_model_and_transforms(
            s.clip_model_name, pretrained=weights.checkpoint, device=device, **options
        )
        model.eval()
        self.torch = torch
        self.model = model
        self.device = device
        self.threads = s.torch_threads
        self.preprocess = preprocess  # open_clip's own transform (reference and fallback)
        self.tokenizer = open_clip.get_tokenizer(s.clip_model_name)
        self.fp32 = TorchRuntime(self, "fp32")
        tokens = self.tokenize(["a photo"])
        self.meta = ClipMeta(
            model=s.clip_model_name,
            weights_tag=weights.tag,
            dimension=int(self.fp32.encode_texts([tokens]).shape[1]),
            logit_scale=float(model.logit_scale.exp().item()),
            preprocess=dict(open_clip.get_model_preprocess_cfg(model)),
            tokenizer=tokenizer_spec(self.tokenizer),
        )

    def tokenize(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.tokenizer(texts).numpy())

    def runtime(self, precision: Precision) -> "TorchRuntime":
        return self.fp32 if precision == "fp32" else TorchRuntime(self, precision)

    def release_weights(self) -> None:
        """Drop the fp32 model once another runtime serves (its tokenizer and transform stay)."""
        self.fp32.close()
        self.model = None


def register_model_config(settings: Settings) -> None:
    """Make CLIP_MODEL_CONFIG's architecture known to open_clip under CLIP_MODEL_NAME."""
    import open_clip

    if settings.clip_model_config is None:
        return
    config = Path(settings.clip_model_config)
    if not config.is_file():
        raise FileNotFoundError(f"CLIP_MODEL_CONFIG {config.name} does not exist")
    if config.stem != settings.clip_model_name:
        raise ValueError(
            f"CLIP_MODEL_NAME ({settings.clip_model_name}) must equal the config file's name "
            f"({config.stem}) when CLIP_MODEL_CONFIG is set"
        )
    open_clip.add_model_config(config)


def tokenizer_spec(tokenizer: Any) -> dict[str, Any] | None:
    """The ClipTokenizer settings that reproduce `tokenizer`, or None if none can (a
    Hugging Face tokenizer, extra special tokens, a reduction strategy)."""
    from open_clip.tokenizer import SimpleTokenizer, get_clean_fn

    if type(tokenizer) is not SimpleTokenizer or tokenizer.reduction_fn is not None:
        return None
    if len(tokenizer.all_special_ids) != 2 or not tokenizer.context_length:
        return None
    from app.services.clip.tokenizer import ClipTokenizer

    if tokenizer.encoder != ClipTokenizer(tokenizer.context_length).encoder:
        return None  # built from another vocabulary file
    for clean in ("lower", "whitespace", "canonicalize"):
        if tokenizer.clean_fn is get_clean_fn(clean):
            return {"kind": "clip-bpe", "context_length": tokenizer.context_length, "clean": clean}
    return None


class TorchRuntime:
    """open_clip's model in one precision: fp32 as loaded, bf16 (a bf16 copy of the
    weights, CPU), or fp16 (autocast, CUDA)."""

    backend: Backend = "torch"

    def __init__(self, source: TorchModel, precision: Precision) -> None:
        torch = source.torch
        self.torch = torch
        self.precision: Precision = precision
        self.device = source.device
        self.threads = source.threads
        self.pinned = source.device == "cuda"
        self._dtype = None
        self.model = source.model
        if precision == "bf16":
            self._dtype = torch.bfloat16
            self.model = copy.deepcopy(source.model).to(torch.bfloat16)
        elif precision not in ("fp32", "fp16"):
            raise ValueError(f"torch has no {precision} runtime here")

    def _autocast(self) -> Any:
        if self.precision == "fp16":
            return self.torch.autocast(self.device, dtype=self.torch.float16)
        return contextlib.nullcontext()

    def _batch(self, parts: list[Any], dtype: Any = None) -> Any:
        """Row blocks to one tensor on the device (pinned host memory on CUDA)."""
        torch = self.torch
        tensors = []
        for part in parts:
            tensor = torch.from_numpy(part) if isinstance(part, np.ndarray) else part
            if tensor.device.type != self.device:
                if self.pinned:
                    tensor = tensor.pin_memory()
                tensor = tensor.to(self.device, non_blocking=self.pinned)
            tensors.append(tensor)
        batch = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
        return batch.to(dtype) if dtype is not None else batch

    def encode_images(self, parts: list[Any]) -> np.ndarray:
        with self.torch.inference_mode():
            with self._autocast():
                out = self.model.encode_image(self._batch(parts, self._dtype))
            return self._unit(out)

    def encode_texts(self, parts: list[Any]) -> np.ndarray:
        with self.torch.inference_mode():
            with self._autocast():
                out = self.model.encode_text(self._batch(parts))
            return self._unit(out)

    def _unit(self, out: Any) -> np.ndarray:
        """L2-normalised in fp32: normalising in bf16 leaves norms up to 0.4% off 1, which
        would scale every similarity an answer reports."""
        out = self.torch.nn.functional.normalize(out.float(), dim=-1)
        return np.asarray(out.cpu().numpy())

    def prepare_thread(self) -> None:
        # Thread settings are per OpenMP thread: apply them where inference runs.
        self.torch.set_num_threads(self.threads)

    def close(self) -> None:
        self.model = None
