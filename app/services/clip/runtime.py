"""The CLIP model itself: finding its weights, loading them, and the two forward passes.

Weights for a registry tag (`CLIP_PRETRAINED=openai`) are looked up in
CLIP_MODEL_CACHE_DIR first and loaded from there with no network access at all. Only when
they are missing is the hub tried, after one short reachability probe: an offline host
fails in well under a second with one message that says how to provide weights, instead
of open_clip's minute of retries.
"""

import contextlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from app.config import Settings
from app.utils.hashing import sha256_file

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 5.0
# On CUDA, fp16 autocast serves only if its embeddings stay this close to fp32's.
FP16_MIN_COSINE = 0.999


class WeightsUnavailable(RuntimeError):
    """The configured weights are neither cached nor downloadable from here."""


@dataclass(frozen=True)
class Weights:
    """Where the weights are and what open_clip needs to build the model around them."""

    checkpoint: str | None  # a local file; None = random initialisation
    tag: str  # shown to callers: registry tag, or file name and hash
    options: dict[str, Any]  # extra create_model_and_transforms arguments for a registry tag


def resolve_weights(settings: Settings) -> Weights:
    """A local checkpoint for the configured weights, downloading only if it is missing."""
    pretrained = settings.clip_pretrained
    if not pretrained:  # random initialisation: benchmarks only, never useful answers
        return Weights(None, "random-init", {})
    local = Path(pretrained)
    if local.suffix or local.is_file():  # a path, not a registry tag such as "openai"
        if not local.is_file():
            raise FileNotFoundError(f"CLIP_PRETRAINED checkpoint {local} does not exist")
        return Weights(str(local), f"{local.name}:sha256:{sha256_file(local)[:12]}", {})

    import open_clip
    from open_clip.pretrained import download_pretrained

    name = settings.clip_model_name
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ValueError(f"{name} has no pretrained weights tagged {pretrained!r} (known: {known})")
    options = {
        "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        "image_mean": cfg.get("mean"),
        "image_std": cfg.get("std"),
        "image_interpolation": cfg.get("interpolation"),
        "image_resize_mode": cfg.get("resize_mode"),
    }
    cache = settings.clip_model_cache_dir
    cached = _cached_checkpoint(cfg, cache)
    if cached is not None:
        return Weights(cached, pretrained, options)
    source = _source_url(cfg)
    problem = _unreachable(source)
    if problem:
        raise WeightsUnavailable(
            f"CLIP weights {name}/{pretrained} are not in CLIP_MODEL_CACHE_DIR ({cache}) and "
            f"{urlsplit(source).netloc} cannot be reached ({problem}). Provide them: run "
            "`python -m app.prefetch` on a host with network and copy the cache directory, "
            "or set CLIP_PRETRAINED=/path/to/checkpoint (with CLIP_MODEL_NAME matching it)."
        )
    cache.mkdir(parents=True, exist_ok=True)
    logger.info("downloading CLIP weights %s/%s into %s", name, pretrained, cache)
    return Weights(download_pretrained(cfg, cache_dir=str(cache)), pretrained, options)


def _cached_checkpoint(cfg: dict[str, Any], cache: Path) -> str | None:
    """The checkpoint open_clip would download for `cfg`, if it is already in `cache`."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        names = [filename]
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for candidate in names:
            found = try_to_load_from_cache(repo, candidate, cache_dir=str(cache))
            if isinstance(found, str) and Path(found).is_file():
                return found
    if cfg.get("url"):
        path = cache / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


def _source_url(cfg: dict[str, Any]) -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT) if cfg.get("hf_hub") else str(cfg.get("url"))


def _unreachable(url: str) -> str | None:
    """Why `url`'s host cannot be reached right now (None if it answers at all)."""
    parts = urlsplit(url)
    request = urllib.request.Request(f"{parts.scheme}://{parts.netloc}/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # the host answered; an error status is the download's business
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"


class TorchRuntime:
    """An open_clip model on one device, with L2-normalised encoders over numpy batches.

    On CUDA the forward passes run under fp16 autocast when that reproduces fp32 on a fixed
    probe set at load (cosine >= FP16_MIN_COSINE for both towers); otherwise fp32.
    """

    def __init__(self, settings: Settings, device: str) -> None:
        import open_clip
        import torch

        s = settings
        if s.clip_model_config is not None:
            config = Path(s.clip_model_config)
            if not config.is_file():
                raise FileNotFoundError(f"CLIP_MODEL_CONFIG {config} does not exist")
            if config.stem != s.clip_model_name:
                raise ValueError(
                    f"CLIP_MODEL_NAME ({s.clip_model_name}) must equal the config file's name "
                    f"({config.stem}) when CLIP_MODEL_CONFIG is set"
                )
            open_clip.add_model_config(config)
        weights = resolve_weights(s)
        options = {k: v for k, v in weights.options.items() if v is not None}
        model, _, preprocess = open_clip.create_model_and_transforms(
            s.clip_model_name, pretrained=weights.checkpoint, device=device, **options
        )
        model.eval()
        self.torch = torch
        self.model = model
        self.preprocess = preprocess  # open_clip's own transform (reference and fallback)
        self.preprocess_cfg: dict[str, Any] = dict(open_clip.get_model_preprocess_cfg(model))
        self.tokenizer = open_clip.get_tokenizer(s.clip_model_name)
        self.device = device
        self.weights_tag = weights.tag
        self.logit_scale = float(model.logit_scale.exp().item())
        self.precision = "fp32"
        self.pinned = device == "cuda"
        self.dimension = int(self.encode_texts(self.tokenize(["a photo"])).shape[1])
        if device == "cuda":
            self.precision = self._fp16_if_faithful()

    def _autocast(self) -> Any:
        if self.precision == "fp16":
            return self.torch.autocast("cuda", dtype=self.torch.float16)
        return contextlib.nullcontext()

    def _to_device(self, rows: Any) -> Any:
        """numpy rows or tensors to one tensor on the device (pinned host memory on CUDA)."""
        torch = self.torch
        parts = rows if isinstance(rows, list) else [rows]
        tensors = []
        for part in parts:
            tensor = torch.from_numpy(part) if isinstance(part, np.ndarray) else part
            if tensor.device.type != self.device:
                if self.pinned:
                    tensor = tensor.pin_memory()
                tensor = tensor.to(self.device, non_blocking=self.pinned)
            tensors.append(tensor)
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def encode_images(self, rows: Any) -> np.ndarray:
        """Preprocessed images (n, 3, h, w), as numpy or tensors, to (n, dim) float32."""
        with self.torch.inference_mode(), self._autocast():
            out = self.model.encode_image(self._to_device(rows), normalize=True)
        return np.asarray(out.float().cpu().numpy())

    def encode_texts(self, tokens: Any) -> np.ndarray:
        """Token ids (n, context) to (n, dim) float32."""
        with self.torch.inference_mode(), self._autocast():
            out = self.model.encode_text(self._to_device(tokens), normalize=True)
        return np.asarray(out.float().cpu().numpy())

    def tokenize(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.tokenizer(texts).numpy())

    def _fp16_if_faithful(self) -> str:
        """'fp16' if autocast reproduces fp32 on the probe set, else 'fp32' (logged)."""
        size = self.preprocess_cfg.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else size
        rng = np.random.default_rng(0)
        images = rng.standard_normal((8, 3, height, width)).astype(np.float32)
        tokens = self.tokenize(
            ["a photo of a dog", "a red circle", "a city at night", "a bowl of fruit"]
        )
        self.precision = "fp32"
        reference = self.encode_images(images), self.encode_texts(tokens)
        self.precision = "fp16"
        candidate = self.encode_images(images), self.encode_texts(tokens)
        worst = min(
            float(np.min(np.sum(a * b, axis=1))) for a, b in zip(reference, candidate, strict=True)
        )
        if worst >= FP16_MIN_COSINE:
            logger.info("CLIP serves fp16 autocast on CUDA (min cosine to fp32 %.5f)", worst)
            return "fp16"
        logger.warning(
            "CLIP fp16 autocast drifts from fp32 (min cosine %.5f < %.3f): serving fp32",
            worst,
            FP16_MIN_COSINE,
        )
        return "fp32"
