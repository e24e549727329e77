"""Where the CLIP weights are, found without network whenever they are cached.

Weights for a registry tag (`CLIP_PRETRAINED=openai`) are looked up in
CLIP_MODEL_CACHE_DIR first and loaded from there with no network access at all. Only when
they are missing is the hub tried, after one short reachability probe: an offline host
fails in well under a second with one message that says how to provide weights, instead
of open_clip's minute of retries.

Once a registry tag has been resolved, a small alias file in the cache remembers its
checkpoint and options, so later starts find it without importing open_clip (and torch):
an ONNX runtime serving from a cached export never needs them.
"""

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.config import Settings
from app.utils.files import atomic_write
from app.utils.hashing import sha256_file_remembered

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 5.0


class WeightsUnavailable(RuntimeError):
    """The configured weights are neither cached nor downloadable from here."""


@dataclass(frozen=True)
class Weights:
    """Where the weights are and what open_clip needs to build the model around them."""

    checkpoint: str | None  # a local file; None = random initialisation
    tag: str  # shown to callers: registry tag, or file name and hash
    options: dict[str, Any]  # extra create_model_and_transforms arguments for a registry tag
    sha256: str | None = None  # of the checkpoint; keys the exports built from it


def resolve_weights(settings: Settings) -> Weights:
    """A local checkpoint for the configured weights, downloading only if it is missing."""
    pretrained = settings.clip_pretrained
    if not pretrained:  # random initialisation: benchmarks only, never useful answers
        return Weights(None, "random-init", {})
    local = Path(pretrained)
    if local.suffix or local.is_file():  # a path, not a registry tag such as "openai"
        if not local.is_file():
            # The name only: /health/ready is public, the mount layout is not.
            raise FileNotFoundError(f"CLIP_PRETRAINED checkpoint {local.name} does not exist")
        digest = sha256_file_remembered(local, _digests(settings))
        return Weights(str(local), f"{local.name}:sha256:{digest[:12]}", {}, digest)
    alias = _alias_path(settings)
    remembered = _read_alias(alias)
    if remembered is not None:
        return remembered
    weights = _resolve_registry_tag(settings)
    _write_alias(alias, weights)
    return weights


DIGESTS = ".digests"  # in the cache: remembered checkpoint digests (sha256_file_remembered)


def _digests(settings: Settings) -> Path:
    return settings.clip_model_cache_dir / DIGESTS


def _alias_path(settings: Settings) -> Path:
    name = f"{settings.clip_model_name}/{settings.clip_pretrained}.weights.json"
    return settings.clip_model_cache_dir / name


def _read_alias(path: Path) -> Weights | None:
    """The weights an alias file names, if that checkpoint is still there."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        checkpoint = Path(data["checkpoint"])
        if not checkpoint.is_absolute():
            checkpoint = path.parent / checkpoint
        if not checkpoint.is_file() or data.get("open_clip") != _open_clip_version():
            return None  # gone, or another open_clip may resolve the tag differently
        digest = sha256_file_remembered(checkpoint, path.parent / DIGESTS)
        return Weights(str(checkpoint), data["tag"], data["options"], digest)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable CLIP weights alias %s: %s", path.name, exc)
        return None


def _write_alias(path: Path, weights: Weights) -> None:
    """Remember where a registry tag's checkpoint is (relative to the alias when inside the
    cache, so the cache directory can be copied elsewhere)."""
    assert weights.checkpoint is not None
    checkpoint = Path(weights.checkpoint).resolve()
    try:
        stored = os.path.relpath(checkpoint, path.parent.resolve())
    except ValueError:  # another drive
        stored = str(checkpoint)
    data = {
        "checkpoint": stored,
        "tag": weights.tag,
        "options": weights.options,
        "open_clip": _open_clip_version(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())
    except OSError as exc:  # a read-only cache still serves; the next start resolves again
        logger.warning("could not remember CLIP weights in %s: %s", path, exc)


def _open_clip_version() -> str:
    from importlib.metadata import version

    return version("open_clip_torch")


def _resolve_registry_tag(settings: Settings) -> Weights:
    pretrained = settings.clip_pretrained
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
        return Weights(
            cached, pretrained, options, sha256_file_remembered(Path(cached), _digests(settings))
        )
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
    checkpoint = download_pretrained(cfg, cache_dir=str(cache))
    return Weights(
        checkpoint,
        pretrained,
        options,
        sha256_file_remembered(Path(checkpoint), _digests(settings)),
    )


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
