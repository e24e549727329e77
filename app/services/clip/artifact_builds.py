"""What runtime selection keeps in the artifact store for one checkpoint: the probe
reference (torch fp32 on the probe set, with the model's metadata) and the ONNX exports.
Each is looked up first and built once where missing, so a later start that needs only
cached artifacts need not import torch."""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.services.clip import onnx_runtime
from app.services.clip.artifacts import ArtifactError, ArtifactStore, library_versions
from app.services.clip.candidates import Trial
from app.services.clip.parity import PROBE_TAGS, Reference, probe_reference
from app.services.clip.preprocess import ImageSpec
from app.services.clip.runtime import ClipMeta, TorchModel
from app.services.clip.weights import Weights
from app.utils.hashing import sha256_file
from app.utils.text import brief_error

logger = logging.getLogger(__name__)

REFERENCE_VERSIONS = ("torch", "open_clip_torch")
ONNX_VERSIONS = ("torch", "open_clip_torch", "onnx", "onnxruntime")


def store_for(settings: Settings, weights: Weights) -> ArtifactStore | None:
    """The artifact store of these weights; None for random-init weights (no checksum to
    key it by, and nothing that could be exported reproducibly)."""
    if weights.sha256 is None:
        return None
    return ArtifactStore(
        settings.clip_model_cache_dir / settings.clip_model_name / weights.sha256,
        model=settings.clip_model_name,
        weights_sha256=weights.sha256,
        variant=_variant(settings, weights),
    )


def _variant(settings: Settings, weights: Weights) -> str:
    """What besides the checkpoint decides the model: its loading options and, for a custom
    architecture, the config file's content."""
    config = settings.clip_model_config
    parts = {
        "options": weights.options,
        "config": sha256_file(Path(config)) if config and Path(config).is_file() else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Cached:
    """What the artifact cache already holds for these weights."""

    meta: ClipMeta | None
    reference: Reference | None
    exports: dict[str, Path | None]  # precision -> export directory, for the ONNX trials

    @classmethod
    def look_up(cls, store: ArtifactStore | None, onnx_precisions: list[str]) -> "Cached":
        if store is None:
            return cls(None, None, {})
        found = store.find("reference", library_versions(*REFERENCE_VERSIONS))
        versions = library_versions(*ONNX_VERSIONS)
        exports = {}
        for precision in onnx_precisions:
            export = store.find(f"onnx-{precision}", versions)
            exports[precision] = export[0] if export else None
        if found is None:
            return cls(None, None, exports)
        path, manifest = found
        try:
            meta = ClipMeta.from_dict(manifest["meta"])
            return cls(meta, Reference.load(path / "probes.npz"), exports)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # removed or damaged meanwhile
            logger.warning("CLIP probe reference unusable (%s): rebuilding it", brief_error(exc))
            store.discard(path)
            return cls(None, None, exports)

    def torch_free(self, live: list[Trial]) -> bool:
        """Everything these trials need is cached and none of them is torch."""
        return (
            self.meta is not None
            and all(t.backend == "onnx" for t in live)
            and all(self.exports.values())
            and self.meta.tokenizer is not None
            and ImageSpec.from_open_clip(self.meta.preprocess) is not None
        )


def build_reference(
    store: ArtifactStore | None, source: TorchModel | None, meta: ClipMeta
) -> Reference:
    """torch fp32 on the probe set, cached with the model's metadata."""
    assert source is not None
    reference = probe_reference(source)
    if store is not None:

        def write(out: Path) -> dict[str, Any]:
            reference.save(out / "probes.npz")
            return {"meta": meta.to_dict(), "probe_tags": list(PROBE_TAGS)}

        try:
            store.build("reference", library_versions(*REFERENCE_VERSIONS), write)
        except ArtifactError as exc:  # a read-only or full cache: this start still gates
            logger.warning("CLIP probe reference not cached: %s", exc)
    return reference


def build_exports(
    store: ArtifactStore | None, source: TorchModel | None, exports: dict[str, Path | None]
) -> dict[str, Path | str]:
    """The ONNX exports the trials need, built where missing (int8 from the fp32 export):
    precision -> directory, or why it could not be built."""
    if store is None or all(exports.values()):
        return {k: v for k, v in exports.items() if v is not None}
    assert source is not None
    versions = library_versions(*ONNX_VERSIONS)

    def write_fp32(out: Path) -> dict[str, Any]:
        onnx_runtime.export(source, out)
        return {"opset": onnx_runtime.OPSET}

    def write_int8(out: Path) -> dict[str, Any]:
        onnx_runtime.quantize_int8(fp32, out)
        return {"quantization": "dynamic; weights QInt8, activations QUInt8 per batch"}

    built: dict[str, Path | str] = {}
    try:
        found = store.find("onnx-fp32", versions) or store.build("onnx-fp32", versions, write_fp32)
    except ArtifactError as exc:
        return {precision: str(exc) for precision in exports}
    fp32 = found[0]
    for precision, path in exports.items():
        if path is not None:
            built[precision] = path
        elif precision == "fp32":
            built[precision] = fp32
        else:
            try:
                built[precision] = store.build("onnx-int8", versions, write_int8)[0]
            except ArtifactError as exc:
                built[precision] = str(exc)
    return built
